#include "trainer/gpt.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "device/kernels.h"
#include "runtime/error.h"
#include "trainer/recipe.h"
#include "trainer/rng.h"

namespace petaring {
namespace {

constexpr float kLayerNormEps = 1e-5f;  // PyTorch's nn.LayerNorm default
constexpr double kInitStd = 0.02;       // GPT-2

std::unique_ptr<Buffer> allocate_f32(Device& device, int64_t count) {
  return device.allocate(static_cast<size_t>(count) * sizeof(float));
}

std::unique_ptr<Buffer> allocate(Device& device, int64_t count, DType dtype) {
  return device.allocate(static_cast<size_t>(count) * dtype_size(dtype));
}

Tensor view(const std::unique_ptr<Buffer>& buffer, Shape shape) {
  return Tensor(buffer.get(), 0, shape, DType::kF32);
}

void check_config(const GptConfig& c, int64_t max_batch) {
  auto positive = [](const char* field, int64_t value) {
    if (value < 1) PR_FAIL(kInvalidArgument, "gpt: ", field, " must be >= 1, got ", value);
  };
  positive("vocab", c.vocab);
  positive("context", c.context);
  positive("layers", c.layers);
  positive("heads", c.heads);
  positive("dim", c.dim);
  positive("batch", max_batch);
  if (c.precision != DType::kF32 && c.precision != DType::kBF16) {
    PR_FAIL(kInvalidArgument, "gpt: precision ", dtype_name(c.precision),
            " is not implemented; use f32 or bf16");
  }
  if (c.dim % c.heads != 0) {
    PR_FAIL(kInvalidArgument, "gpt: dim ", c.dim, " is not a multiple of heads ", c.heads,
            "; pick dim = heads x head size, e.g. dim ", c.heads * std::max<int64_t>(1, c.dim / c.heads));
  }
}

// y (N, out) = x (N, in) @ W^T + b, W (out, in) at `w`, b (out) at `b`. With bf16 x and W
// (mixed precision) y may be f32 or bf16; b is f32 either way.
void linear(Queue& q, Tensor x, Tensor w, Tensor b, Tensor y) {
  if (x.dtype == DType::kBF16) {
    kernels::linear_bf16(q, x, w, b, y);
    return;
  }
  kernels::gemm(q, false, true, 1.0f, x, w, 0.0f, y);
  kernels::bias_add(q, y, b);
}

// gemm, or gemm_bf16 when A and B are bf16 (C is f32 either way).
void matmul(Queue& q, bool trans_a, bool trans_b, Tensor a, Tensor b, float beta, Tensor c) {
  if (a.dtype == DType::kBF16) {
    kernels::gemm_bf16(q, trans_a, trans_b, 1.0f, a, b, beta, c);
  } else {
    kernels::gemm(q, trans_a, trans_b, 1.0f, a, b, beta, c);
  }
}

void layernorm(Queue& q, Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd) {
  if (y.dtype == DType::kBF16) {
    kernels::layernorm_forward_bf16(q, x, w, b, y, mean, rstd, kLayerNormEps);
  } else {
    kernels::layernorm_forward(q, x, w, b, y, mean, rstd, kLayerNormEps);
  }
}

}  // namespace

GptConfig gpt_config(const ModelConfig& model) {
  GptConfig c;
  c.vocab = model.vocab;
  c.context = model.context;
  c.layers = model.blocks;
  c.heads = model.heads;
  c.dim = model.dim;
  c.tie_embeddings = model.tie_embeddings;
  return c;
}

struct Gpt::Block {
  int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b;  // offsets, see the layout in gpt.h
  int64_t ln2_w, ln2_b, fc_w, fc_b, fc_proj_w, fc_proj_b;
  int64_t begin, end;  // the block's parameter range
};

// Activations of one block, each sized for (max_batch, context, ...), read through views
// of the current (B, T).
struct BlockActivations {
  std::unique_ptr<Buffer> ln1, ln1_mean, ln1_rstd;  // (B, T, C), (B T), (B T)
  std::unique_ptr<Buffer> qkv;                      // (B, T, 3C)
  std::unique_ptr<Buffer> probs;                    // (B, H, T, T)
  std::unique_ptr<Buffer> atty;                     // (B, T, C) attention output, pre-proj
  std::unique_ptr<Buffer> res_att;                  // (B, T, C) x + proj(atty)
  std::unique_ptr<Buffer> ln2, ln2_mean, ln2_rstd;  // (B, T, C), (B T), (B T)
  std::unique_ptr<Buffer> fch, fch_gelu;            // (B, T, 4C) pre- and post-GELU
  std::unique_ptr<Buffer> res_mlp;                  // (B, T, C) the block's output
};

struct Gpt::Activations {
  std::vector<BlockActivations> blocks;
  std::unique_ptr<Buffer> encoded;                  // (B, T, C)
  std::unique_ptr<Buffer> lnf, lnf_mean, lnf_rstd;  // (B, T, C), (B T), (B T)
  std::unique_ptr<Buffer> logits, probs, loss;      // (B T, V), (B T, V), (1)
  // Backward scratch, shared by all blocks.
  std::unique_ptr<Buffer> dres;     // (B, T, C) gradient of the residual stream
  std::unique_ptr<Buffer> dbuf;     // (B, T, C)
  std::unique_ptr<Buffer> dqkv;     // (B, T, 3C)
  std::unique_ptr<Buffer> dfch;     // (B, T, 4C)
  std::unique_ptr<Buffer> dscores;  // (B, H, T, T)
  std::unique_ptr<Buffer> dlogits;  // (B T, V)
  std::unique_ptr<Buffer> dy16;     // bf16 (B T, max(V, 4C)), mixed precision only
};

Gpt::Gpt(const GptConfig& config, Device& device, int64_t max_batch)
    : config_(config), max_batch_(max_batch) {
  check_config(config, max_batch);
  const int64_t v = config.vocab, p = config.context, c = config.dim;
  auto add = [&](const std::string& name, Shape shape) {
    named_.push_back(Named{name, num_params_, shape});
    num_params_ += shape.numel();
    return named_.back().offset;
  };
  wte_ = add("wte", Shape{v, c});
  wpe_ = add("wpe", Shape{p, c});
  for (int64_t l = 0; l < config.layers; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    Block b{};
    b.begin = num_params_;
    b.ln1_w = add(h + "ln_1.w", Shape{c});
    b.ln1_b = add(h + "ln_1.b", Shape{c});
    b.qkv_w = add(h + "qkv.w", Shape{3 * c, c});
    b.qkv_b = add(h + "qkv.b", Shape{3 * c});
    b.proj_w = add(h + "proj.w", Shape{c, c});
    b.proj_b = add(h + "proj.b", Shape{c});
    b.ln2_w = add(h + "ln_2.w", Shape{c});
    b.ln2_b = add(h + "ln_2.b", Shape{c});
    b.fc_w = add(h + "fc.w", Shape{4 * c, c});
    b.fc_b = add(h + "fc.b", Shape{4 * c});
    b.fc_proj_w = add(h + "fc_proj.w", Shape{c, 4 * c});
    b.fc_proj_b = add(h + "fc_proj.b", Shape{c});
    b.end = num_params_;
    blocks_.push_back(b);
  }
  lnf_w_ = add("ln_f.w", Shape{c});
  lnf_b_ = add("ln_f.b", Shape{c});
  head_ = config.tie_embeddings ? wte_ : add("head", Shape{v, c});

  params_ = allocate_f32(device, num_params_);
  grads_ = allocate_f32(device, num_params_);
  // Stored activations and weight copies: f32, or bf16 in mixed precision.
  const DType act = config.precision;
  if (bf16()) params16_ = allocate(device, num_params_, DType::kBF16);
  acts_ = std::make_unique<Activations>();
  const int64_t rows = max_batch * p, scores = max_batch * config.heads * p * p;
  for (int64_t l = 0; l < config.layers; ++l) {
    BlockActivations a;
    a.ln1 = allocate(device, rows * c, act);
    a.ln1_mean = allocate_f32(device, rows);
    a.ln1_rstd = allocate_f32(device, rows);
    a.qkv = allocate(device, rows * 3 * c, act);
    a.probs = allocate(device, scores, act);
    a.atty = allocate(device, rows * c, act);
    a.res_att = allocate_f32(device, rows * c);
    a.ln2 = allocate(device, rows * c, act);
    a.ln2_mean = allocate_f32(device, rows);
    a.ln2_rstd = allocate_f32(device, rows);
    a.fch = allocate(device, rows * 4 * c, act);
    a.fch_gelu = allocate(device, rows * 4 * c, act);
    a.res_mlp = allocate_f32(device, rows * c);
    acts_->blocks.push_back(std::move(a));
  }
  Activations& a = *acts_;
  a.encoded = allocate_f32(device, rows * c);
  a.lnf = allocate(device, rows * c, act);
  a.lnf_mean = allocate_f32(device, rows);
  a.lnf_rstd = allocate_f32(device, rows);
  a.logits = allocate_f32(device, rows * v);
  a.probs = allocate_f32(device, rows * v);
  a.loss = allocate_f32(device, 1);
  a.dres = allocate_f32(device, rows * c);
  a.dbuf = allocate_f32(device, rows * c);
  a.dqkv = allocate_f32(device, rows * 3 * c);
  a.dfch = allocate_f32(device, rows * 4 * c);
  a.dscores = allocate_f32(device, scores);
  a.dlogits = allocate_f32(device, rows * v);
  // bf16 copies of dY for the backward's matrix products: (B T, max(V, 4C)).
  if (bf16()) a.dy16 = allocate(device, rows * std::max(v, 4 * c), DType::kBF16);
}

Gpt::~Gpt() = default;

Tensor Gpt::params() const { return Tensor(params_.get(), 0, Shape{num_params_}, DType::kF32); }
Tensor Gpt::grads() const { return Tensor(grads_.get(), 0, Shape{num_params_}, DType::kF32); }
Tensor Gpt::param(int64_t offset, Shape shape) const { return params().slice(offset, shape); }
Tensor Gpt::weight(int64_t offset, Shape shape) const {
  if (!bf16()) return param(offset, shape);
  return Tensor(params16_.get(), 0, Shape{num_params_}, DType::kBF16).slice(offset, shape);
}
Tensor Gpt::stored(const std::unique_ptr<Buffer>& buffer, Shape shape) const {
  return Tensor(buffer.get(), 0, shape, config_.precision);
}
Tensor Gpt::product_operand(Queue& q, Tensor dy) const {
  if (!bf16()) return dy;
  Tensor copy = stored(acts_->dy16, dy.shape);
  kernels::convert(q, dy, copy);
  return copy;
}
Tensor Gpt::grad(int64_t offset, Shape shape) const { return grads().slice(offset, shape); }

void Gpt::initialize(Queue& q, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> host(static_cast<size_t>(num_params_), 0.0f);
  const double residual_std = kInitStd / std::sqrt(2.0 * static_cast<double>(config_.layers));
  auto normal = [&](int64_t offset, int64_t count, double std) {
    for (int64_t i = 0; i < count; ++i) host[offset + i] = static_cast<float>(std * rng.normal());
  };
  auto ones = [&](int64_t offset) {
    std::fill(host.begin() + offset, host.begin() + offset + config_.dim, 1.0f);
  };
  const int64_t c = config_.dim;
  normal(wte_, config_.vocab * c, kInitStd);
  normal(wpe_, config_.context * c, kInitStd);
  for (const Block& b : blocks_) {  // biases stay 0
    ones(b.ln1_w);
    normal(b.qkv_w, 3 * c * c, kInitStd);
    normal(b.proj_w, c * c, residual_std);
    ones(b.ln2_w);
    normal(b.fc_w, 4 * c * c, kInitStd);
    normal(b.fc_proj_w, 4 * c * c, residual_std);
  }
  ones(lnf_w_);
  if (!config_.tie_embeddings) normal(head_, config_.vocab * c, kInitStd);
  q.write(params(), host.data());
  q.synchronize();  // `host` dies at return
}

void Gpt::forward_block(Queue& q, int64_t l, Tensor x) {
  const Block& b = blocks_[l];
  BlockActivations& a = acts_->blocks[l];
  const int64_t n = batch_ * steps_, c = config_.dim, h = config_.heads;
  const Shape nc{n, c};
  Tensor ln1 = stored(a.ln1, nc), qkv = stored(a.qkv, Shape{n, 3 * c});
  Tensor atty = stored(a.atty, nc), res_att = view(a.res_att, nc);
  Tensor probs = stored(a.probs, {batch_, h, steps_, steps_});
  layernorm(q, x.reshape(nc), param(b.ln1_w, {c}), param(b.ln1_b, {c}), ln1,
            view(a.ln1_mean, {n}), view(a.ln1_rstd, {n}));
  linear(q, ln1, weight(b.qkv_w, {3 * c, c}), param(b.qkv_b, {3 * c}), qkv);
  if (bf16()) {
    kernels::attention_forward_bf16(q, qkv.reshape({batch_, steps_, 3 * c}),
                                    atty.reshape({batch_, steps_, c}), probs, h);
  } else {
    kernels::attention_forward(q, qkv.reshape({batch_, steps_, 3 * c}),
                               atty.reshape({batch_, steps_, c}), probs, h);
  }
  linear(q, atty, weight(b.proj_w, {c, c}), param(b.proj_b, {c}), res_att);
  kernels::add(q, res_att, x.reshape(nc), res_att);

  Tensor ln2 = stored(a.ln2, nc), fch = stored(a.fch, {n, 4 * c});
  Tensor fch_gelu = stored(a.fch_gelu, {n, 4 * c}), res_mlp = view(a.res_mlp, nc);
  layernorm(q, res_att, param(b.ln2_w, {c}), param(b.ln2_b, {c}), ln2, view(a.ln2_mean, {n}),
            view(a.ln2_rstd, {n}));
  linear(q, ln2, weight(b.fc_w, {4 * c, c}), param(b.fc_b, {4 * c}), fch);
  if (bf16()) {
    kernels::gelu_bf16(q, fch, fch_gelu);
  } else {
    kernels::gelu(q, fch, fch_gelu);
  }
  linear(q, fch_gelu, weight(b.fc_proj_w, {c, 4 * c}), param(b.fc_proj_b, {c}), res_mlp);
  kernels::add(q, res_mlp, res_att, res_mlp);
}

Tensor Gpt::forward(Queue& q, Tensor tokens, Tensor targets) {
  if (tokens.shape.rank() != 2 || tokens.shape[0] > max_batch_ || tokens.shape[1] > config_.context ||
      tokens.shape[0] < 1 || tokens.shape[1] < 1) {
    PR_FAIL(kInvalidArgument, "gpt: tokens ", tokens.shape, " do not fit: expected (B <= ",
            max_batch_, ", T <= context ", config_.context, ")");
  }
  if (targets.shape != tokens.shape) {
    PR_FAIL(kInvalidArgument, "gpt: targets ", targets.shape, " must match tokens ", tokens.shape);
  }
  batch_ = tokens.shape[0];
  steps_ = tokens.shape[1];
  tokens_ = tokens;
  targets_ = targets;
  const int64_t n = batch_ * steps_, c = config_.dim, v = config_.vocab;
  Activations& a = *acts_;
  Tensor x = view(a.encoded, {batch_, steps_, c});
  if (bf16()) kernels::convert(q, params(), weight(0, {num_params_}));  // after any update
  kernels::embedding_forward(q, tokens, param(wte_, {v, c}), param(wpe_, {config_.context, c}), x);
  for (int64_t l = 0; l < config_.layers; ++l) {
    forward_block(q, l, x);
    x = view(acts_->blocks[l].res_mlp, {batch_, steps_, c});
  }
  Tensor lnf = stored(a.lnf, {n, c}), logits = view(a.logits, {n, v});
  layernorm(q, x.reshape({n, c}), param(lnf_w_, {c}), param(lnf_b_, {c}), lnf,
            view(a.lnf_mean, {n}), view(a.lnf_rstd, {n}));
  matmul(q, false, true, lnf, weight(head_, {v, c}), 0.0f, logits);
  Tensor loss = view(a.loss, {1});
  kernels::softmax_xent_forward(q, logits, targets.reshape({n}), view(a.probs, {n, v}), loss);
  return loss;
}

// `x` is the block's input (B T, C); `dres` holds dL/d(block output) on entry and
// dL/dx on return. ready(offset, count) follows each parameter gradient's kernel, in
// exactly the reverse of the layout (each bias before its weight), so that the finished
// gradients always form one slice and a bucket can close after any tensor.
void Gpt::backward_block(Queue& q, int64_t l, Tensor x, Tensor dres, float beta,
                         const std::function<void(int64_t, int64_t)>& ready) {
  const Block& b = blocks_[l];
  BlockActivations& a = acts_->blocks[l];
  Activations& s = *acts_;
  const int64_t n = batch_ * steps_, c = config_.dim, h = config_.heads;
  const Shape nc{n, c};
  Tensor dbuf = view(s.dbuf, nc), dfch = view(s.dfch, {n, 4 * c}), dqkv = view(s.dqkv, {n, 3 * c});
  // MLP: res_mlp = res_att + fch_gelu @ fc_proj.w^T + fc_proj.b
  kernels::bias_grad(q, dres, grad(b.fc_proj_b, {c}), beta);
  ready(b.fc_proj_b, c);
  Tensor dy = product_operand(q, dres);
  matmul(q, true, false, dy, stored(a.fch_gelu, {n, 4 * c}), beta, grad(b.fc_proj_w, {c, 4 * c}));
  ready(b.fc_proj_w, c * 4 * c);
  matmul(q, false, false, dy, weight(b.fc_proj_w, {c, 4 * c}), 0.0f, dfch);
  if (bf16()) {
    kernels::gelu_backward_bf16(q, stored(a.fch, {n, 4 * c}), dfch, dfch);
  } else {
    kernels::gelu_backward(q, view(a.fch, {n, 4 * c}), dfch, dfch);
  }
  kernels::bias_grad(q, dfch, grad(b.fc_b, {4 * c}), beta);
  ready(b.fc_b, 4 * c);
  dy = product_operand(q, dfch);
  matmul(q, true, false, dy, stored(a.ln2, nc), beta, grad(b.fc_w, {4 * c, c}));
  ready(b.fc_w, 4 * c * c);
  matmul(q, false, false, dy, weight(b.fc_w, {4 * c, c}), 0.0f, dbuf);
  kernels::layernorm_backward(q, dbuf, view(a.res_att, nc), param(b.ln2_w, {c}),
                              view(a.ln2_mean, {n}), view(a.ln2_rstd, {n}), dres,
                              grad(b.ln2_w, {c}), grad(b.ln2_b, {c}), 1.0f, beta);
  ready(b.ln2_w, 2 * c);  // ln_2.w and ln_2.b, adjacent
  // Attention: res_att = x + atty @ proj.w^T + proj.b
  kernels::bias_grad(q, dres, grad(b.proj_b, {c}), beta);
  ready(b.proj_b, c);
  dy = product_operand(q, dres);
  matmul(q, true, false, dy, stored(a.atty, nc), beta, grad(b.proj_w, {c, c}));
  ready(b.proj_w, c * c);
  matmul(q, false, false, dy, weight(b.proj_w, {c, c}), 0.0f, dbuf);
  Tensor qkv = stored(a.qkv, {batch_, steps_, 3 * c});
  Tensor probs = stored(a.probs, {batch_, h, steps_, steps_});
  Tensor dscores = view(s.dscores, {batch_, h, steps_, steps_});
  if (bf16()) {
    kernels::attention_backward_bf16(q, dbuf.reshape({batch_, steps_, c}), qkv, probs,
                                     dqkv.reshape({batch_, steps_, 3 * c}), dscores, h);
  } else {
    kernels::attention_backward(q, dbuf.reshape({batch_, steps_, c}), qkv, probs,
                                dqkv.reshape({batch_, steps_, 3 * c}), dscores, h);
  }
  kernels::bias_grad(q, dqkv, grad(b.qkv_b, {3 * c}), beta);
  ready(b.qkv_b, 3 * c);
  dy = product_operand(q, dqkv);
  matmul(q, true, false, dy, stored(a.ln1, nc), beta, grad(b.qkv_w, {3 * c, c}));
  ready(b.qkv_w, 3 * c * c);
  matmul(q, false, false, dy, weight(b.qkv_w, {3 * c, c}), 0.0f, dbuf);
  kernels::layernorm_backward(q, dbuf, x, param(b.ln1_w, {c}), view(a.ln1_mean, {n}),
                              view(a.ln1_rstd, {n}), dres, grad(b.ln1_w, {c}), grad(b.ln1_b, {c}),
                              1.0f, beta);
  ready(b.ln1_w, 2 * c);  // ln_1.w and ln_1.b
}

void Gpt::backward(Queue& q, const StepOptions& options) {
  PR_CHECK(batch_ > 0) << "gpt: backward before forward";
  const int64_t n = batch_ * steps_, c = config_.dim, v = config_.vocab;
  const float beta = options.accumulate ? 1.0f : 0.0f;
  auto ready = [&](int64_t offset, int64_t count) {
    if (options.on_grad_ready) options.on_grad_ready(offset, count, q.record());
  };
  Activations& a = *acts_;
  Tensor dlogits = view(a.dlogits, {n, v}), dres = view(a.dres, {n, c});
  kernels::softmax_xent_backward(q, view(a.probs, {n, v}), targets_.reshape({n}), dlogits,
                                 options.grad_scale / static_cast<float>(n));
  // Head: logits = lnf @ head^T. A tied head writes wte's gradient first; the embedding
  // adds to it at the end.
  Tensor dy = product_operand(q, dlogits);
  matmul(q, true, false, dy, stored(a.lnf, {n, c}), beta, grad(head_, {v, c}));
  if (!config_.tie_embeddings) ready(head_, v * c);
  matmul(q, false, false, dy, weight(head_, {v, c}), 0.0f, view(a.dbuf, {n, c}));
  const int64_t last = config_.layers - 1;
  Tensor x_last = view(acts_->blocks[last].res_mlp, {n, c});
  kernels::layernorm_backward(q, view(a.dbuf, {n, c}), x_last, param(lnf_w_, {c}),
                              view(a.lnf_mean, {n}), view(a.lnf_rstd, {n}), dres,
                              grad(lnf_w_, {c}), grad(lnf_b_, {c}), 0.0f, beta);
  ready(lnf_w_, 2 * c);  // ln_f.w and ln_f.b
  for (int64_t l = last; l >= 0; --l) {
    Tensor x = l == 0 ? view(a.encoded, {n, c}) : view(acts_->blocks[l - 1].res_mlp, {n, c});
    backward_block(q, l, x, dres, beta, ready);
  }
  kernels::embedding_backward(q, dres.reshape({batch_, steps_, c}), tokens_, grad(wte_, {v, c}),
                              grad(wpe_, {config_.context, c}),
                              config_.tie_embeddings ? 1.0f : beta, beta);
  ready(wpe_, config_.context * c);
  ready(wte_, v * c);
}

void Gpt::forward_backward(Queue& q, const Batch& batch, const StepOptions& options,
                           float* loss) {
  Tensor loss_view = forward(q, batch.inputs, batch.targets);
  q.read(loss, loss_view);
  backward(q, options);
}

EvalSums Gpt::evaluate(Queue& q, const Batch& batch) {
  Tensor loss_view = forward(q, batch.inputs, batch.targets);
  const int64_t n = batch_ * steps_, v = config_.vocab;
  probs_host_.resize(static_cast<size_t>(n * v));
  std::vector<int32_t> targets(static_cast<size_t>(n));
  float loss = 0;
  q.read(probs_host_.data(), view(acts_->probs, {n, v}));
  q.read(targets.data(), batch.targets);
  q.read(&loss, loss_view);
  q.synchronize();
  EvalSums sums;
  sums.loss = static_cast<double>(loss) * static_cast<double>(n);
  sums.count = static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs_host_.data() + i * v;
    sums.correct += std::max_element(row, row + v) - row == targets[static_cast<size_t>(i)] ? 1 : 0;
  }
  return sums;
}

std::string Gpt::describe() const {
  return str_cat("gpt ", config_.layers, "x", config_.dim, " (", config_.heads, " heads, context ",
                 config_.context, ", vocab ", config_.vocab,
                 config_.tie_embeddings ? ", tied" : ", untied head", bf16() ? ", bf16)" : ")");
}

}  // namespace petaring
