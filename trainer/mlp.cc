#include "trainer/mlp.h"

#include <algorithm>
#include <cmath>

#include "device/kernels.h"
#include "runtime/error.h"
#include "trainer/rng.h"

namespace petaring {

Mlp::Mlp(const ModelConfig& config, Device& device, int64_t max_batch)
    : config_(config), sizes_(config.layers), max_batch_(max_batch) {
  PR_CHECK_GE(sizes_.size(), size_t{2}) << "an MLP needs an input and an output size";
  PR_CHECK_GT(max_batch, 0);
  for (size_t l = 0; l + 1 < sizes_.size(); ++l) {
    Layer layer;
    layer.in = sizes_[l];
    layer.out = sizes_[l + 1];
    layer.weight_offset = num_params_;
    layer.bias_offset = num_params_ + layer.in * layer.out;
    num_params_ = layer.bias_offset + layer.out;
    layers_.push_back(layer);
  }
  size_t param_bytes = static_cast<size_t>(num_params_) * sizeof(float);
  params_ = device.allocate(param_bytes);
  grads_ = device.allocate(param_bytes);
  int64_t widest = 0;
  for (size_t l = 1; l < sizes_.size(); ++l) {
    activations_.push_back(device.allocate(static_cast<size_t>(max_batch * sizes_[l]) * sizeof(float)));
    widest = std::max(widest, sizes_[l]);
  }
  for (auto& s : scratch_) s = device.allocate(static_cast<size_t>(max_batch * widest) * sizeof(float));
}

Tensor Mlp::params() const { return Tensor(params_.get(), 0, Shape{num_params_}, DType::kF32); }
Tensor Mlp::grads() const { return Tensor(grads_.get(), 0, Shape{num_params_}, DType::kF32); }

Tensor Mlp::weight(const Buffer& buf, const Layer& layer) const {
  return Tensor(const_cast<Buffer*>(&buf), static_cast<size_t>(layer.weight_offset) * sizeof(float),
                Shape{layer.out, layer.in}, DType::kF32);
}
Tensor Mlp::bias(const Buffer& buf, const Layer& layer) const {
  return Tensor(const_cast<Buffer*>(&buf), static_cast<size_t>(layer.bias_offset) * sizeof(float),
                Shape{layer.out}, DType::kF32);
}
Tensor Mlp::activation(size_t index, int64_t batch) const {
  return Tensor(activations_[index].get(), 0, Shape{batch, sizes_[index + 1]}, DType::kF32);
}

void Mlp::initialize(Queue& q, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> host(static_cast<size_t>(num_params_));
  for (const Layer& layer : layers_) {
    float* w = host.data() + layer.weight_offset;  // (out, in)
    float* b = host.data() + layer.bias_offset;    // (out)
    double fan_in = static_cast<double>(layer.in);
    if (config_.init == "kaiming_normal") {
      // He et al.: N(0, 2 / fan_in), zero bias.
      double stddev = std::sqrt(2.0 / fan_in);
      for (int64_t i = 0; i < layer.out * layer.in; ++i) w[i] = static_cast<float>(stddev * rng.normal());
      std::fill(b, b + layer.out, 0.0f);
    } else {
      // PyTorch's Linear default (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), +).
      double bound = 1.0 / std::sqrt(fan_in);
      for (int64_t i = 0; i < layer.out * layer.in; ++i) w[i] = static_cast<float>(rng.uniform(-bound, bound));
      for (int64_t i = 0; i < layer.out; ++i) b[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
  }
  q.write(params(), host.data());
  q.synchronize();  // `host` dies at return
}

Tensor Mlp::forward(Queue& q, Tensor x) {
  int64_t batch = x.shape.dim(0);
  if (x.shape.rank() != 2 || x.shape[1] != input_size() || batch > max_batch_) {
    PR_FAIL(kInvalidArgument, "MLP input ", x.shape, " does not fit: expected (B <= ", max_batch_,
            ", ", input_size(), ")");
  }
  batch_ = batch;
  input_ = x;
  Tensor h = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    Tensor y = activation(l, batch);  // (B, out_l)
    kernels::gemm(q, false, true, 1.0f, h, weight(*params_, layers_[l]), 0.0f, y);
    kernels::bias_add(q, y, bias(*params_, layers_[l]));
    if (l + 1 < layers_.size()) kernels::relu(q, y, y);
    h = y;
  }
  return h;
}

void Mlp::backward(Queue& q, Tensor dlogits) {
  PR_CHECK(dlogits.shape == (Shape{batch_, output_size()}))
      << "dlogits " << dlogits.shape << " after a forward of batch " << batch_;
  Tensor dy = dlogits;  // (B, out_l)
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& layer = layers_[l];
    Tensor x = l == 0 ? input_ : activation(l - 1, batch_);  // (B, in_l)
    kernels::gemm(q, true, false, 1.0f, dy, x, 0.0f, weight(*grads_, layer));  // dW = dy^T x
    kernels::bias_grad(q, dy, bias(*grads_, layer), 0.0f);                     // db = sum_B dy
    if (l == 0) break;
    Tensor dx(scratch_[l % 2].get(), 0, Shape{batch_, layer.in}, DType::kF32);
    kernels::gemm(q, false, false, 1.0f, dy, weight(*params_, layer), 0.0f, dx);  // dx = dy W
    kernels::relu_backward(q, x, dx, dx);  // x is the previous layer's ReLU output
    dy = dx;
  }
}

}  // namespace petaring
