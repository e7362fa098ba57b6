// The MLP's backward against central finite differences of its loss, and the data
// reader's checks.
#include "trainer/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "device/cpu/cpu_device.h"
#include "tests/trainer/cpu_device_test.h"
#include "device/kernels.h"
#include "trainer/rng.h"

namespace petaring {
namespace {

class MlpGradientTest : public testing_trainer::CpuDeviceTest {};

TEST_F(MlpGradientTest, BackwardMatchesFiniteDifferences) {
  ModelConfig config;
  config.layers = {6, 5, 4, 3};
  const int64_t batch = 4;
  Mlp mlp(config, *device_, batch);
  mlp.initialize(*queue_, 7);
  Queue& q = *queue_;

  Rng rng(3);
  auto x_buf = device_->allocate(batch * 6 * sizeof(float));
  auto labels_buf = device_->allocate(batch * sizeof(int32_t));
  auto probs_buf = device_->allocate(batch * 3 * sizeof(float));
  auto loss_buf = device_->allocate(sizeof(float));
  Tensor x(x_buf.get(), 0, Shape{batch, 6}, DType::kF32);
  Tensor labels(labels_buf.get(), 0, Shape{batch}, DType::kI32);
  Tensor probs(probs_buf.get(), 0, Shape{batch, 3}, DType::kF32);
  Tensor loss(loss_buf.get(), 0, Shape{1}, DType::kF32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(rng.uniform(-1, 1));
  for (int64_t i = 0; i < batch; ++i) labels.data<int32_t>()[i] = static_cast<int32_t>(rng.below(3));

  auto loss_at = [&]() {
    kernels::softmax_xent_forward(q, mlp.forward(q, x), labels, probs, loss);
    q.synchronize();
    return static_cast<double>(loss.data<float>()[0]);
  };
  // Analytic gradient.
  Tensor logits = mlp.forward(q, x);
  kernels::softmax_xent_forward(q, logits, labels, probs, loss);
  kernels::softmax_xent_backward(q, probs, labels, logits, 1.0f / batch);
  mlp.backward(q, logits);
  q.synchronize();
  std::vector<float> analytic(mlp.grads().data<float>(), mlp.grads().data<float>() + mlp.num_params());

  float* params = mlp.params().data<float>();
  const float eps = 1e-3f;
  int checked = 0;
  for (int64_t i = 0; i < mlp.num_params(); ++i) {
    float saved = params[i];
    params[i] = saved + eps;
    double up = loss_at();
    params[i] = saved - eps;
    double down = loss_at();
    params[i] = saved;
    double numeric = (up - down) / (2.0 * eps);
    double a = analytic[static_cast<size_t>(i)];
    EXPECT_NEAR(a, numeric, 2e-3 + 2e-2 * std::fabs(numeric)) << "parameter " << i;
    ++checked;
  }
  EXPECT_EQ(checked, 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
  // A non-trivial gradient: not all zero.
  double norm = 0;
  for (float g : analytic) norm += g * g;
  EXPECT_GT(norm, 1e-6);
}

TEST_F(MlpGradientTest, InitializationIsDeterministicAndFollowsTheBound) {
  ModelConfig config;
  config.layers = {100, 20, 10};
  Mlp a(config, *device_, 1), b(config, *device_, 1), c(config, *device_, 1);
  a.initialize(*queue_, 5);
  b.initialize(*queue_, 5);
  c.initialize(*queue_, 6);
  const float* pa = a.params().data<float>();
  const float* pb = b.params().data<float>();
  const float* pc = c.params().data<float>();
  int differ = 0;
  for (int64_t i = 0; i < a.num_params(); ++i) {
    ASSERT_EQ(pa[i], pb[i]);
    differ += pa[i] != pc[i];
    // kaiming_uniform: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in 100, then 20.
    float bound = i < 100 * 20 + 20 ? 0.1f : 1.0f / std::sqrt(20.0f);
    ASSERT_LE(std::fabs(pa[i]), bound + 1e-6f) << i;
  }
  EXPECT_GT(differ, a.num_params() / 2);
}

TEST_F(MlpGradientTest, OversizedBatchIsRejected) {
  ModelConfig config;
  config.layers = {4, 2};
  Mlp mlp(config, *device_, 2);
  auto buf = device_->allocate(3 * 4 * sizeof(float));
  Tensor x(buf.get(), 0, Shape{3, 4}, DType::kF32);
  EXPECT_THROW(mlp.forward(*queue_, x), Error);
}

}  // namespace
}  // namespace petaring
