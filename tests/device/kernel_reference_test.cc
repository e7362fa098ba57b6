// Kernel outputs against naive reference loops in double, and sgd_momentum against a
// sequence computed by hand from PyTorch's formula.
#include <cmath>
#include <limits>

#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

using KernelReferenceTest = DeviceTest;

// C = alpha op(A) op(B) + beta C in double; beta == 0 ignores C.
std::vector<double> reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                   double alpha, const std::vector<float>& a,
                                   const std::vector<float>& b, double beta,
                                   const std::vector<float>& c) {
  std::vector<double> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double a_ip = trans_a ? a[p * m + i] : a[i * k + p];
        const double b_pj = trans_b ? b[j * k + p] : b[p * n + j];
        sum += a_ip * b_pj;
      }
      out[i * n + j] = alpha * sum + (beta == 0.0 ? 0.0 : beta * c[i * n + j]);
    }
  }
  return out;
}

struct GemmShape {
  int64_t m, n, k;
};

TEST_P(KernelReferenceTest, GemmMatchesNaiveLoopsOnOddAndEmptyShapes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (GemmShape s : {GemmShape{7, 5, 3}, GemmShape{1, 1, 1}, GemmShape{33, 17, 65},
                      GemmShape{0, 4, 3}, GemmShape{4, 0, 3}, GemmShape{4, 3, 0}}) {
    for (int trans = 0; trans < 4; ++trans) {
      const bool ta = trans & 1, tb = trans & 2;
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-0.5f, 1.0f},
                                 std::pair{2.0f, -0.25f}}) {
        SCOPED_TRACE(::testing::Message() << s.m << "x" << s.n << "x" << s.k << " ta " << ta
                                          << " tb " << tb << " alpha " << alpha << " beta " << beta);
        const auto a_host = random_values(s.m * s.k, 21), b_host = random_values(s.k * s.n, 22);
        auto c_host = random_values(s.m * s.n, 23);
        if (beta == 0.0f) std::fill(c_host.begin(), c_host.end(), nan);  // must be ignored
        Tensor a = upload(a_host, ta ? Shape{s.k, s.m} : Shape{s.m, s.k});
        Tensor b = upload(b_host, tb ? Shape{s.n, s.k} : Shape{s.k, s.n});
        Tensor c = upload(c_host, {s.m, s.n});
        kernels::gemm(*queue_, ta, tb, alpha, a, b, beta, c);
        const auto got = download(c);
        const auto want = reference_gemm(ta, tb, s.m, s.n, s.k, alpha, a_host, b_host, beta, c_host);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          EXPECT_NEAR(got[i], want[i], 1e-5 * (1 + s.k)) << "element " << i;
        }
      }
    }
  }
}

TEST_P(KernelReferenceTest, BiasGradAccumulatesWithBeta) {
  const int64_t rows = 6, cols = 9;
  const auto dy_host = random_values(rows * cols, 31), old_host = random_values(cols, 32);
  Tensor dy = upload(dy_host, {rows, cols}), dbias = upload(old_host, {cols});
  kernels::bias_grad(*queue_, dy, dbias, 0.5f);
  const auto got = download(dbias);
  for (int64_t j = 0; j < cols; ++j) {
    double want = 0.5 * old_host[j];
    for (int64_t i = 0; i < rows; ++i) want += dy_host[i * cols + j];
    EXPECT_NEAR(got[j], want, 1e-5) << "column " << j;
  }
}

TEST_P(KernelReferenceTest, SoftmaxXentForwardIsStableAndMatchesReference) {
  const int64_t rows = 3, classes = 4;
  // Row 1 would overflow exp() without subtracting the row maximum.
  const std::vector<float> logits_host = {0.5f, -1.0f, 2.0f, 0.0f,     1000.0f, 1001.0f,
                                          999.0f, 1000.5f, -3.0f, -3.0f, -3.0f, -3.0f};
  const std::vector<int32_t> labels_host = {2, 0, 3};
  Tensor logits = upload(logits_host, {rows, classes}), probs = make({rows, classes});
  Tensor loss = make({1}), labels = upload_labels(labels_host);
  kernels::softmax_xent_forward(*queue_, logits, labels, probs, loss);
  const auto got_probs = download(probs);
  double want_loss = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    double max = -1e300, sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) max = std::max(max, double(logits_host[i * classes + j]));
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(logits_host[i * classes + j] - max);
    for (int64_t j = 0; j < classes; ++j) {
      EXPECT_NEAR(got_probs[i * classes + j], std::exp(logits_host[i * classes + j] - max) / sum, 1e-6);
    }
    want_loss += -(logits_host[i * classes + labels_host[i]] - max - std::log(sum));
  }
  EXPECT_NEAR(download(loss)[0], want_loss / rows, 1e-5);
}

TEST_P(KernelReferenceTest, SoftmaxXentBackwardIsProbsMinusOneHotTimesScale) {
  const std::vector<float> probs_host = {0.1f, 0.2f, 0.7f, 0.25f, 0.25f, 0.5f};
  Tensor probs = upload(probs_host, {2, 3}), dlogits = make({2, 3});
  Tensor labels = upload_labels({2, 0});
  kernels::softmax_xent_backward(*queue_, probs, labels, dlogits, 0.5f);
  const auto got = download(dlogits);
  const std::vector<float> onehot = {0, 0, 1, 1, 0, 0};
  for (size_t i = 0; i < got.size(); ++i) EXPECT_FLOAT_EQ(got[i], (probs_host[i] - onehot[i]) * 0.5f);
}

TEST_P(KernelReferenceTest, SoftmaxXentLabelOutOfRangeSurfacesAtSynchronize) {
  Tensor logits = upload(random_values(12, 33), {4, 3}), probs = make({4, 3}), loss = make({1});
  Tensor labels = upload_labels({0, 1, 7, 2});
  kernels::softmax_xent_forward(*queue_, logits, labels, probs, loss);
  expect_error([&] { queue_->synchronize(); }, ErrorKind::kInvalidArgument,
               {queue_->name(), "label 7", "row 2"});
  kernels::fill(*queue_, loss, 3.0f);  // the queue still works afterwards
  EXPECT_EQ(download(loss)[0], 3.0f);
}

// Two steps with constant grad 2 from param 1, values exact in binary:
//   g = grad + wd * p; v = m * v + g; p -= lr * (nesterov ? g + m * v : v)
TEST_P(KernelReferenceTest, SgdMomentumFollowsHandComputedSteps) {
  const float lr = 0.25f, momentum = 0.5f, decay = 0.5f;
  struct Case {
    bool nesterov;
    float after_step1, after_step2;
  };
  // plain:    g=2.5  v=2.5  p=1-0.25*2.5=0.375;  g=2.1875 v=3.4375 p=0.375-0.859375
  // nesterov: g=2.5  v=2.5  d=3.75 p=0.0625;     g=2.03125 v=3.28125 d=3.671875 p=0.0625-0.91796875
  for (Case tc : {Case{false, 0.375f, -0.484375f}, Case{true, 0.0625f, -0.85546875f}}) {
    Tensor param = upload({1.0f}, {1}), grad = upload({2.0f}, {1}), velocity = make({1});
    kernels::fill(*queue_, velocity, 0.0f);
    kernels::sgd_momentum(*queue_, param, grad, velocity, lr, momentum, decay, tc.nesterov);
    EXPECT_EQ(download(param)[0], tc.after_step1) << "nesterov " << tc.nesterov;
    kernels::sgd_momentum(*queue_, param, grad, velocity, lr, momentum, decay, tc.nesterov);
    EXPECT_EQ(download(param)[0], tc.after_step2) << "nesterov " << tc.nesterov;
  }
}

TEST_P(KernelReferenceTest, SgdMomentumMatchesPyTorchFormulaOverManySteps) {
  const int64_t count = 37;
  struct Case {
    float momentum, decay;
    bool nesterov;
  };
  for (Case tc : {Case{0.9f, 1e-2f, false}, Case{0.9f, 1e-2f, true}, Case{0.0f, 0.0f, false},
                  Case{0.5f, 0.0f, true}}) {
    SCOPED_TRACE(::testing::Message() << "momentum " << tc.momentum << " decay " << tc.decay
                                      << " nesterov " << tc.nesterov);
    auto p_ref = random_values(count, 41);
    std::vector<float> v_ref(count, 0.0f);
    Tensor param = upload(p_ref, {count}), grad = make({count}), velocity = make({count});
    kernels::fill(*queue_, velocity, 0.0f);
    for (int step = 0; step < 5; ++step) {
      const auto g_host = random_values(count, 50 + step);
      set(grad, g_host);
      kernels::sgd_momentum(*queue_, param, grad, velocity, 0.1f, tc.momentum, tc.decay, tc.nesterov);
      for (int64_t i = 0; i < count; ++i) {
        const double g = double(g_host[i]) + double(tc.decay) * p_ref[i];
        const double v = double(tc.momentum) * v_ref[i] + g;
        v_ref[i] = float(v);
        p_ref[i] = float(p_ref[i] - 0.1 * (tc.nesterov ? g + tc.momentum * v : v));
      }
    }
    const auto p_got = download(param), v_got = download(velocity);
    for (int64_t i = 0; i < count; ++i) {
      EXPECT_NEAR(p_got[i], p_ref[i], 1e-5) << "param " << i;
      EXPECT_NEAR(v_got[i], v_ref[i], 1e-5) << "velocity " << i;
    }
  }
}

TEST_P(KernelReferenceTest, FillCopyScaleAndRelu) {
  const auto x_host = random_values(10, 61);
  Tensor x = upload(x_host, {2, 5}), y = make({10}), r = make({2, 5});
  kernels::copy(*queue_, x, y);
  kernels::scale(*queue_, y, -2.0f);
  kernels::relu(*queue_, x, r);
  const auto y_got = download(y), r_got = download(r);
  for (size_t i = 0; i < x_host.size(); ++i) {
    EXPECT_EQ(y_got[i], -2.0f * x_host[i]);
    EXPECT_EQ(r_got[i], std::max(x_host[i], 0.0f));
  }
  kernels::relu(*queue_, x, x);  // in place is allowed
  EXPECT_EQ(download(x), r_got);
  kernels::fill(*queue_, x.slice(3, {4}), 1.5f);
  const auto filled = download(x);
  for (size_t i = 0; i < filled.size(); ++i) {
    EXPECT_EQ(filled[i], i >= 3 && i < 7 ? 1.5f : r_got[i]) << "element " << i;
  }
}

PETARING_INSTANTIATE_DEVICE_SUITE(KernelReferenceTest);

}  // namespace
}  // namespace petaring::testing
