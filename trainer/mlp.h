// A multi-layer perceptron with explicit forward and backward on the device kernel table.
//
// Layer l maps (B, in_l) -> (B, out_l): y = x @ W_l^T + b_l, with W_l (out_l, in_l) as in
// PyTorch's Linear, followed by ReLU on every layer but the last. All parameters live in
// ONE contiguous buffer and all gradients in another, in the same layout:
//   [W_0 (out_0, in_0) | b_0 (out_0) | W_1 | b_1 | ...]
// so the gradient allreduce works on a single slice and no packing copy exists.
// As a Model (trainer/model.h) the loss is softmax cross-entropy over integer labels, and
// backward reports gradients ready in the order b_L-1, W_L-1, ..., b_0, W_0.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "device/device.h"
#include "trainer/model.h"
#include "trainer/recipe.h"

namespace petaring {

class Mlp : public Model {
 public:
  // Allocates parameters, gradients and activations for up to `max_batch` rows on
  // `device` (kOutOfMemory if its budget is too small).
  Mlp(const ModelConfig& config, Device& device, int64_t max_batch);
  ~Mlp() override;

  std::string describe() const override;
  int64_t num_params() const override { return num_params_; }
  int64_t input_size() const { return sizes_.front(); }
  int64_t output_size() const { return sizes_.back(); }
  Tensor params() const override;  // (num_params)
  Tensor grads() const override;   // (num_params), same layout
  int64_t max_batch() const override { return max_batch_; }

  // Fills parameters on the host from `seed` (config.init) and writes them to the
  // device; blocks until written. The same seed gives the same weights everywhere.
  void initialize(Queue& q, uint64_t seed) override;

  // Model: batch.inputs (B, in) f32, batch.targets (B) i32 labels.
  void forward_backward(Queue& q, const Batch& batch, const StepOptions& options,
                        float* loss) override;
  EvalSums evaluate(Queue& q, const Batch& batch) override;

  // x (B, in) -> logits (B, out), B <= max_batch. Keeps activations for backward.
  // Asynchronous on q. The returned view is valid until the next forward.
  Tensor forward(Queue& q, Tensor x);
  // dlogits (B, out) of the same B as the last forward -> grads(): overwritten, or added
  // to when `accumulate`. Calls `on_ready` (when set) after each bias and weight gradient
  // is enqueued. Asynchronous on q.
  void backward(Queue& q, Tensor dlogits, bool accumulate = false,
                const GradReadyFn& on_ready = nullptr);

 private:
  struct Layer {
    int64_t in = 0, out = 0;
    int64_t weight_offset = 0, bias_offset = 0;  // elements into params/grads
  };
  Tensor weight(const Buffer& buf, const Layer& layer) const;
  Tensor bias(const Buffer& buf, const Layer& layer) const;
  Tensor activation(size_t index, int64_t batch) const;  // (batch, sizes_[index])

  ModelConfig config_;
  std::vector<int64_t> sizes_;
  std::vector<Layer> layers_;
  int64_t num_params_ = 0;
  int64_t max_batch_ = 0;
  int64_t batch_ = 0;  // rows of the last forward
  Tensor input_;       // the last forward's x
  std::unique_ptr<Buffer> params_;
  std::unique_ptr<Buffer> grads_;
  // activations_[l] holds the output of layer l (post-ReLU for hidden layers);
  // scratch_ holds the gradient flowing back through hidden layers.
  std::vector<std::unique_ptr<Buffer>> activations_;
  std::unique_ptr<Buffer> scratch_[2];
  std::unique_ptr<Buffer> probs_;  // (max_batch, out): softmax of the last logits
  std::unique_ptr<Buffer> loss_;   // (1)
  std::vector<float> probs_host_;  // evaluate's copy of probs_
};

}  // namespace petaring
