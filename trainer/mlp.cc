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
  probs_ = device.allocate(static_cast<size_t>(max_batch * output_size()) * sizeof(float));
  loss_ = device.allocate(sizeof(float));
}

Mlp::~Mlp() = default;

std::string Mlp::describe() const {
  std::string text = "mlp ";
  for (size_t i = 0; i < sizes_.size(); ++i) {
    if (i > 0) text += '-';
    text += std::to_string(sizes_[i]);
  }
  return text;
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

void Mlp::backward(Queue& q, Tensor dlogits, bool accumulate, const GradReadyFn& on_ready) {
  const float beta = accumulate ? 1.0f : 0.0f;
  auto ready = [&](int64_t offset, int64_t count) {
    if (on_ready) on_ready(offset, count, std::shared_ptr<Event>(q.record()));
  };
  PR_CHECK(dlogits.shape == (Shape{batch_, output_size()}))
      << "dlogits " << dlogits.shape << " after a forward of batch " << batch_;
  Tensor dy = dlogits;  // (B, out_l)
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& layer = layers_[l];
    Tensor x = l == 0 ? input_ : activation(l - 1, batch_);  // (B, in_l)
    kernels::bias_grad(q, dy, bias(*grads_, layer), beta);  // db (+)= sum_B dy
    ready(layer.bias_offset, layer.out);
    kernels::gemm(q, true, false, 1.0f, dy, x, beta, weight(*grads_, layer));  // dW (+)= dy^T x
    ready(layer.weight_offset, layer.out * layer.in);
    if (l == 0) break;
    Tensor dx(scratch_[l % 2].get(), 0, Shape{batch_, layer.in}, DType::kF32);
    kernels::gemm(q, false, false, 1.0f, dy, weight(*params_, layer), 0.0f, dx);  // dx = dy W
    kernels::relu_backward(q, x, dx, dx);  // x is the previous layer's ReLU output
    dy = dx;
  }
}

void Mlp::forward_backward(Queue& q, const Batch& batch, const StepOptions& options,
                           float* loss) {
  const int64_t rows = batch.inputs.shape.dim(0);
  Tensor probs(probs_.get(), 0, Shape{rows, output_size()}, DType::kF32);
  Tensor logits = forward(q, batch.inputs);
  Tensor loss_view(loss_.get(), 0, Shape{1}, DType::kF32);
  kernels::softmax_xent_forward(q, logits, batch.targets, probs, loss_view);
  // The loss is a mean over the B rows, scaled for accumulation.
  kernels::softmax_xent_backward(q, probs, batch.targets, logits,
                                 options.grad_scale / static_cast<float>(rows));
  q.read(loss, loss_view);
  backward(q, logits, options.accumulate, options.on_grad_ready);
}

EvalSums Mlp::evaluate(Queue& q, const Batch& batch) {
  const int64_t rows = batch.inputs.shape.dim(0);
  const int64_t classes = output_size();
  Tensor probs(probs_.get(), 0, Shape{rows, classes}, DType::kF32);
  Tensor loss_view(loss_.get(), 0, Shape{1}, DType::kF32);
  kernels::softmax_xent_forward(q, forward(q, batch.inputs), batch.targets, probs, loss_view);
  probs_host_.resize(static_cast<size_t>(rows * classes));
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  float loss = 0;
  q.read(probs_host_.data(), probs);
  q.read(labels.data(), batch.targets);
  q.read(&loss, loss_view);
  q.synchronize();
  EvalSums sums;
  sums.loss = static_cast<double>(loss) * static_cast<double>(rows);
  sums.count = static_cast<double>(rows);
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = probs_host_.data() + i * classes;
    const int64_t best = std::max_element(row, row + classes) - row;
    sums.correct += best == labels[static_cast<size_t>(i)] ? 1 : 0;
  }
  return sums;
}

}  // namespace petaring
