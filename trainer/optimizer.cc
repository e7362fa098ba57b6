#include "trainer/optimizer.h"

#include "device/kernels.h"
#include "runtime/error.h"

namespace petaring {
namespace {

// A zeroed f32 buffer shaped like `like`.
std::unique_ptr<Buffer> zeroed_like(Device& device, Queue& q, const Tensor& like) {
  std::unique_ptr<Buffer> buffer = device.allocate(like.bytes());
  kernels::fill(q, Tensor(buffer.get(), 0, like.shape, DType::kF32), 0.0f);
  return buffer;
}

Tensor whole(Buffer& buffer, const Tensor& like) {
  return Tensor(&buffer, 0, like.shape, DType::kF32);
}

// PyTorch's SGD with momentum, weight decay and nesterov ("sgd_momentum").
class Sgd : public Optimizer {
 public:
  Sgd(const OptimizerConfig& config, Device& device, Queue& q, Tensor params, Tensor grads)
      : config_(config), params_(params), grads_(grads),
        velocity_(zeroed_like(device, q, params)) {}

  void step(Queue& q, int64_t /*t*/, double lr) override {
    kernels::sgd_momentum(q, params_, grads_, whole(*velocity_, params_), static_cast<float>(lr),
                          static_cast<float>(config_.momentum),
                          static_cast<float>(config_.weight_decay), config_.nesterov);
  }
  std::vector<std::pair<std::string, Tensor>> state() const override {
    return {{"velocity", whole(*velocity_, params_)}};
  }

 private:
  OptimizerConfig config_;
  Tensor params_, grads_;
  std::unique_ptr<Buffer> velocity_;
};

// PyTorch's AdamW ("adamw"): first and second moment estimates as state.
class AdamW : public Optimizer {
 public:
  AdamW(const OptimizerConfig& config, Device& device, Queue& q, Tensor params, Tensor grads)
      : config_(config), params_(params), grads_(grads), m_(zeroed_like(device, q, params)),
        v_(zeroed_like(device, q, params)) {}

  void step(Queue& q, int64_t t, double lr) override {
    kernels::adamw(q, params_, grads_, whole(*m_, params_), whole(*v_, params_),
                   static_cast<float>(lr), static_cast<float>(config_.betas[0]),
                   static_cast<float>(config_.betas[1]), static_cast<float>(config_.eps),
                   static_cast<float>(config_.weight_decay), t);
  }
  std::vector<std::pair<std::string, Tensor>> state() const override {
    return {{"m", whole(*m_, params_)}, {"v", whole(*v_, params_)}};
  }

 private:
  OptimizerConfig config_;
  Tensor params_, grads_;
  std::unique_ptr<Buffer> m_, v_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, Device& device,
                                          Queue& q, Tensor params, Tensor grads) {
  if (config.type == "sgd") return std::make_unique<Sgd>(config, device, q, params, grads);
  if (config.type == "adamw") return std::make_unique<AdamW>(config, device, q, params, grads);
  PR_FAIL(kInvalidArgument, "optimizer.type '", config.type,
          "' is not one of: sgd, adamw; fix the recipe's optimizer.type");
}

}  // namespace petaring
