// The optimizer kernels: adamw against a sequence computed by hand from PyTorch's AdamW
// and against a double reference over many steps; sum_squares against exact sums.
#include <cmath>
#include <vector>

#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

using OptimizerKernelTest = DeviceTest;

// Two steps from param 1 with grad 2 then -2; lr 0.25, wd 0.5, betas (0.5, 0.75), eps 2:
//   step 1: p = 1 * (1 - 0.125) = 0.875; m = 1; v = 1; m^ = 1 / 0.5 = 2;
//           sqrt(v^) = sqrt(1 / 0.25) = 2; p = 0.875 - 0.25 * 2 / (2 + 2) = 0.75
//   step 2: p = 0.75 * 0.875 = 0.65625; m = 0.5 - 1 = -0.5; v = 0.75 + 1 = 1.75;
//           m^ = -0.5 / 0.75 = -2/3; sqrt(v^) = sqrt(1.75 / 0.4375) = 2;
//           p = 0.65625 + 0.25 * (2/3) / 4 = 0.65625 + 1/24 = 67/96
TEST_P(OptimizerKernelTest, AdamwFollowsHandComputedSteps) {
  Tensor param = upload({1.0f}, {1}), grad = upload({2.0f}, {1});
  Tensor m = upload({0.0f}, {1}), v = upload({0.0f}, {1});
  kernels::adamw(*queue_, param, grad, m, v, 0.25f, 0.5f, 0.75f, 2.0f, 0.5f, 1);
  EXPECT_EQ(download(param)[0], 0.75f);
  EXPECT_EQ(download(m)[0], 1.0f);
  EXPECT_EQ(download(v)[0], 1.0f);
  set(grad, {-2.0f});
  kernels::adamw(*queue_, param, grad, m, v, 0.25f, 0.5f, 0.75f, 2.0f, 0.5f, 2);
  EXPECT_NEAR(download(param)[0], 67.0 / 96.0, 1e-7);
  EXPECT_EQ(download(m)[0], -0.5f);
  EXPECT_EQ(download(v)[0], 1.75f);
}

// The first step of Adam moves every parameter by about lr in the direction of -grad,
// whatever the gradient's size (m^ / sqrt(v^) = g / |g|).
TEST_P(OptimizerKernelTest, AdamwFirstStepIsSignOfGradTimesLr) {
  Tensor param = upload({0.0f, 0.0f, 0.0f}, {3}), grad = upload({1e-3f, -50.0f, 7.0f}, {3});
  Tensor m = make({3}), v = make({3});
  kernels::fill(*queue_, m, 0.0f);
  kernels::fill(*queue_, v, 0.0f);
  kernels::adamw(*queue_, param, grad, m, v, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
  const auto p = download(param);
  EXPECT_NEAR(p[0], -0.01f, 1e-6);
  EXPECT_NEAR(p[1], 0.01f, 1e-6);
  EXPECT_NEAR(p[2], -0.01f, 1e-6);
}

TEST_P(OptimizerKernelTest, AdamwMatchesPyTorchFormulaOverManySteps) {
  const int64_t count = 37;
  const double lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  for (double decay : {0.0, 1e-2}) {
    SCOPED_TRACE(::testing::Message() << "weight_decay " << decay);
    auto p_ref = random_values(count, 41);
    std::vector<double> m_ref(count, 0.0), v_ref(count, 0.0);
    Tensor param = upload(p_ref, {count}), grad = make({count});
    Tensor m = make({count}), v = make({count});
    kernels::fill(*queue_, m, 0.0f);
    kernels::fill(*queue_, v, 0.0f);
    for (int step = 1; step <= 6; ++step) {
      const auto g_host = random_values(count, 50 + step);
      set(grad, g_host);
      kernels::adamw(*queue_, param, grad, m, v, float(lr), float(beta1), float(beta2),
                     float(eps), float(decay), step);
      const double c1 = 1 - std::pow(double(float(beta1)), step);
      const double c2 = 1 - std::pow(double(float(beta2)), step);
      for (int64_t i = 0; i < count; ++i) {
        const double g = g_host[i];
        m_ref[i] = double(float(beta1)) * m_ref[i] + (1 - double(float(beta1))) * g;
        v_ref[i] = double(float(beta2)) * v_ref[i] + (1 - double(float(beta2))) * g * g;
        const double p = p_ref[i] * (1 - lr * decay);
        p_ref[i] = float(p - lr * (m_ref[i] / c1) / (std::sqrt(v_ref[i] / c2) + eps));
      }
    }
    const auto p_got = download(param), m_got = download(m), v_got = download(v);
    for (int64_t i = 0; i < count; ++i) {
      EXPECT_NEAR(p_got[i], p_ref[i], 2e-6) << "param " << i;
      EXPECT_NEAR(m_got[i], m_ref[i], 1e-6) << "m " << i;
      EXPECT_NEAR(v_got[i], v_ref[i], 1e-7) << "v " << i;
    }
  }
}

TEST_P(OptimizerKernelTest, AdamwRejectsBadStepAndShapes) {
  Tensor p = make({4}), g = make({4}), m = make({4}), v = make({4});
  expect_error([&] { kernels::adamw(*queue_, p, g, m, v, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0); },
               ErrorKind::kInvalidArgument, {"adamw", "step t is 0"});
  expect_error(
      [&] { kernels::adamw(*queue_, p, g, m, make({5}), 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 1); },
      ErrorKind::kInvalidArgument, {"adamw", "v", "(5)"});
  expect_error([&] { kernels::adamw(*queue_, p, g, p, v, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 1); },
               ErrorKind::kInvalidArgument, {"adamw", "overlaps"});
}

// Small integers square and add exactly, so the expected sums are exact.
TEST_P(OptimizerKernelTest, SumSquaresIsExactOnIntegers) {
  std::vector<float> values(1001);
  double expected = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(static_cast<int>(i % 7) - 3);
    expected += values[i] * values[i];
  }
  Tensor x = upload(values, {7, 143}), out = make({1});
  kernels::sum_squares(*queue_, x, out);
  EXPECT_EQ(download(out)[0], static_cast<float>(expected));
  EXPECT_EQ(expected, 28.0 * 143);  // 9+4+1+0+1+4+9 = 28 per 7 elements
  kernels::sum_squares(*queue_, x.slice(3, {3}), out);  // values 0, 1, 2
  EXPECT_EQ(download(out)[0], 5.0f);
  kernels::sum_squares(*queue_, make({0}), out);
  EXPECT_EQ(download(out)[0], 0.0f);
}

// 4096^2 = 2^24: adding 1s to it one at a time in f32 would lose every one of them.
TEST_P(OptimizerKernelTest, SumSquaresDoesNotLoseSmallTermsNextToALargeOne) {
  std::vector<float> values(1001, 1.0f);
  values[0] = 4096.0f;
  Tensor x = upload(values, {1001}), out = make({1});
  kernels::sum_squares(*queue_, x, out);
  EXPECT_EQ(download(out)[0], 16777216.0f + 1000.0f);
  expect_error([&] { kernels::sum_squares(*queue_, x, make({2})); }, ErrorKind::kInvalidArgument,
               {"sum_squares", "(2)"});
}

PETARING_INSTANTIATE_DEVICE_SUITE(OptimizerKernelTest);

}  // namespace
}  // namespace petaring::testing
