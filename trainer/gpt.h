// A GPT-2 style decoder-only transformer with explicit forward and backward on the device
// kernel table (device/kernels.h).
//
//   tokens (B, T) -> wte[tokens] + wpe[0..T)                       encoded (B, T, C)
//   L blocks, pre-LN:  x = x + proj(attention(qkv(ln_1(x))))     causal, H heads
//                      x = x + fc_proj(gelu(fc(ln_2(x))))        fc: C -> 4C, tanh GELU
//   ln_f(x) @ head^T -> logits (B, T, V); head is wte (tied) or its own (V, C) matrix
//   loss = mean over (b, t) of -log softmax(logits)[targets]
//
// Linear weights are (out, in) as in PyTorch's nn.Linear. All parameters live in ONE
// contiguous f32 buffer and all gradients in another, in the same layout:
//   [wte (V, C) | wpe (P, C) | block 0 | ... | block L-1 | ln_f.w (C) | ln_f.b (C) | head (V, C)]
//   block: ln_1.w (C) | ln_1.b (C) | qkv.w (3C, C) | qkv.b (3C) | proj.w (C, C) | proj.b (C) |
//          ln_2.w (C) | ln_2.b (C) | fc.w (4C, C) | fc.b (4C) | fc_proj.w (C, 4C) | fc_proj.b (C)
// (head only when untied; P = context). Backward finishes gradients tensor by tensor in
// exactly the reverse of this layout (a bias before its weight), so the finished ones
// always form one slice from the end and a gradient bucket can close after any tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "trainer/model.h"

namespace petaring {

struct ModelConfig;

struct GptConfig {
  int64_t vocab = 256;    // V
  int64_t context = 128;  // P: the longest sequence
  int64_t layers = 4;     // L: transformer blocks
  int64_t heads = 4;      // H; dim % heads == 0
  int64_t dim = 128;      // C
  bool tie_embeddings = true;
  // kF32, or kBF16 for mixed precision (recipe `training.precision: bf16`), as in PyTorch
  // autocast with bf16 plus f32 master weights: params() and grads() stay f32 (the
  // optimizer, the gradient allreduce and checkpoints see only f32); a bf16 copy of the
  // parameters is refreshed from them at every forward (so after each optimizer step,
  // checkpoint load or broadcast); the matrix products (qkv, proj, fc, fc_proj, LM head,
  // forward and backward) take bf16 operands and sum in f32; the activations kept for
  // backward (LayerNorm outputs, qkv, attention probabilities and output, the MLP's
  // hidden layer) are stored in bf16. The residual stream, LayerNorm statistics and
  // parameters, embeddings, logits, softmax and loss, and every gradient are f32.
  DType precision = DType::kF32;
};

// The gpt keys of a recipe's model section (trainer/recipe.h).
GptConfig gpt_config(const ModelConfig& model);

class Gpt : public Model {
 public:
  // Checks the config (kInvalidArgument naming the field) and allocates parameters,
  // gradients and activations for up to `max_batch` sequences of up to config.context
  // tokens on `device` (kOutOfMemory if its budget is too small).
  Gpt(const GptConfig& config, Device& device, int64_t max_batch);
  ~Gpt() override;

  const GptConfig& config() const { return config_; }
  // "gpt 4x128 (4 heads, context 128, vocab 256, tied)", ", bf16)" in mixed precision
  std::string describe() const override;
  int64_t num_params() const override { return num_params_; }
  Tensor params() const override;  // (num_params)
  Tensor grads() const override;   // (num_params), same layout
  int64_t max_batch() const override { return max_batch_; }

  // GPT-2's initialization from `seed`: weights N(0, 0.02), the two residual projections
  // of every block N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm weights 1. Blocks until
  // written; the same seed gives the same weights everywhere.
  void initialize(Queue& q, uint64_t seed) override;

  // Model: batch.inputs and batch.targets are (B, T) i32 token ids (see forward).
  void forward_backward(Queue& q, const Batch& batch, const StepOptions& options,
                        float* loss) override;
  // Sums over the B T tokens: loss, and tokens whose most likely next token is the target.
  EvalSums evaluate(Queue& q, const Batch& batch) override;

  // tokens, targets: (B, T) i32 with B <= max_batch, T <= context, ids < vocab. Returns
  // the mean loss, a (1) tensor valid until the next forward. Keeps activations for
  // backward. Asynchronous on q; `tokens` and `targets` must stay valid until backward's
  // work has run.
  Tensor forward(Queue& q, Tensor tokens, Tensor targets);
  // The gradients of options.grad_scale x the last forward's loss into grads() (added
  // when options.accumulate). Calls options.on_grad_ready per parameter tensor as its
  // gradient is enqueued, in the reverse of the layout order (a tied wte last).
  // Asynchronous on q.
  void backward(Queue& q, const StepOptions& options = {});

  // Named parameter views, for tests and checkpoints: in layout order, names as in the
  // header comment ("wte", "h.0.qkv.w", ..., "head").
  struct Named {
    std::string name;
    int64_t offset = 0;  // elements into params()/grads()
    Shape shape;
  };
  const std::vector<Named>& named_params() const { return named_; }

 private:
  struct Block;
  struct Activations;
  Tensor param(int64_t offset, Shape shape) const;
  // A matrix weight as the matrix products read it: the f32 master, or its bf16 copy.
  Tensor weight(int64_t offset, Shape shape) const;
  // The activation buffer `buffer` as (shape) in the storage dtype (f32 or bf16).
  Tensor stored(const std::unique_ptr<Buffer>& buffer, Shape shape) const;
  // dY for the matrix products of a backward: itself in f32, its bf16 copy otherwise.
  Tensor product_operand(Queue& q, Tensor dy) const;
  bool bf16() const { return config_.precision == DType::kBF16; }
  Tensor grad(int64_t offset, Shape shape) const;
  void forward_block(Queue& q, int64_t l, Tensor x);
  void backward_block(Queue& q, int64_t l, Tensor x, Tensor dres, float beta,
                      const std::function<void(int64_t, int64_t)>& ready);

  GptConfig config_;
  int64_t max_batch_ = 0;
  int64_t batch_ = 0, steps_ = 0;  // B and T of the last forward
  Tensor tokens_, targets_;
  int64_t num_params_ = 0;
  int64_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0, head_ = 0;  // offsets
  std::vector<Block> blocks_;
  std::vector<Named> named_;
  std::unique_ptr<Buffer> params_;
  std::unique_ptr<Buffer> grads_;
  std::unique_ptr<Buffer> params16_;  // bf16 copy of params_ (mixed precision only)
  std::unique_ptr<Activations> acts_;
  std::vector<float> probs_host_;  // evaluate's copy of the probabilities
};

}  // namespace petaring
