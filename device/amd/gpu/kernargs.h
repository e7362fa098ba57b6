/* Kernarg layouts of the GPU kernels in kernels.cl, one struct per kernel of the table
 * in device/kernels.h. Included by the OpenCL C source (compiled for gfx1100) and by
 * host C++ (the amd backend writes kernargs with it; the mock KFD's CPU twins read them
 * back from memory with it), so both sides agree on every byte.
 *
 * Each kernel takes its struct by value as its only argument, so the struct sits at
 * offset 0 of the kernarg segment. Buffers are GPU virtual addresses (8 bytes each),
 * then scalars. Element counts are 32-bit: one work-item per element, and an AQL grid
 * is 32-bit too. Tensors are dense, row-major f32 (labels i32).
 *
 * Launch shapes (work-items; every kernel has a fixed workgroup size):
 *   1-D kernels      workgroup PR_BLOCK x 1 x 1, grid round_up(count, PR_BLOCK) x 1 x 1
 *   gemm             workgroup PR_GEMM_TILE x PR_GEMM_TILE, grid round_up(n) x round_up(m)
 *   reductions       (softmax_xent_forward's loss, sum_squares) one workgroup of PR_BLOCK
 */
#ifndef PETARING_DEVICE_AMD_GPU_KERNARGS_H_
#define PETARING_DEVICE_AMD_GPU_KERNARGS_H_

#ifdef __OPENCL_C_VERSION__
typedef ulong pr_u64;
typedef uint pr_u32;
#else
#include <stdint.h>
typedef uint64_t pr_u64;
typedef uint32_t pr_u32;
#endif

#define PR_BLOCK 256     /* workgroup size of the 1-D kernels and reductions */
#define PR_GEMM_TILE 16  /* gemm workgroups are PR_GEMM_TILE x PR_GEMM_TILE */

/* C = alpha * op(A) @ op(B) + beta * C; op(A): (m, k), op(B): (k, n), C: (m, n).
 * A is stored (m, k), or (k, m) when trans_a; B (k, n), or (n, k) when trans_b.
 * beta == 0 ignores C's old contents. Grid: round_up(n, 16) x round_up(m, 16). */
typedef struct {
  pr_u64 a, b, c;
  pr_u32 m, n, k;
  pr_u32 trans_a, trans_b;
  float alpha, beta;
} PrGemmArgs;

/* y[i, j] += bias[j]; y: (rows, cols). Grid: rows * cols. */
typedef struct {
  pr_u64 y, bias;
  pr_u32 rows, cols;
} PrBiasAddArgs;

/* dbias[j] = beta * dbias[j] + sum_i dy[i, j] (beta == 0 ignores dbias). Grid: cols. */
typedef struct {
  pr_u64 dy, dbias;
  pr_u32 rows, cols;
  float beta;
} PrBiasGradArgs;

/* y = max(x, 0), y may alias x. Grid: count. */
typedef struct {
  pr_u64 x, y;
  pr_u32 count;
} PrReluArgs;

/* dx = y > 0 ? dy : 0, dx may alias dy. Grid: count. */
typedef struct {
  pr_u64 y, dy, dx;
  pr_u32 count;
} PrReluBackwardArgs;

/* probs = row-wise softmax(logits), loss[0] = mean_i -log(probs[i, labels[i]]).
 * One workgroup of PR_BLOCK; work-item t handles rows t, t + PR_BLOCK, ...
 * `status` (0 = none) is the address of a u64 the host zeroes before the launch; a row
 * with a label outside [0, cols) stores (label << 32 | row + 1) there and is skipped. */
typedef struct {
  pr_u64 logits, labels, probs, loss, status;
  pr_u32 rows, cols;
} PrSoftmaxXentForwardArgs;

/* dlogits = (probs - onehot(labels)) * scale. Grid: rows * cols. `status` as above. */
typedef struct {
  pr_u64 probs, labels, dlogits, status;
  pr_u32 rows, cols;
  float scale;
} PrSoftmaxXentBackwardArgs;

/* PyTorch's SGD with momentum (see device/kernels.h). Grid: count. */
typedef struct {
  pr_u64 param, grad, velocity;
  pr_u32 count;
  float lr, momentum, weight_decay;
  pr_u32 nesterov;
} PrSgdMomentumArgs;

/* PyTorch's AdamW with the per-step scalars computed on the host in double (as PyTorch
 * does; pr_make_adamw_args below):
 *   keep = 1 - lr * weight_decay, step_size = lr / (1 - beta1^t),
 *   bias2_sqrt = sqrt(1 - beta2^t)
 *   param = param * keep - step_size * m / (sqrt(v) / bias2_sqrt + eps). Grid: count. */
typedef struct {
  pr_u64 param, grad, m, v;
  pr_u32 count;
  float beta1, beta2, eps;
  float keep, step_size, bias2_sqrt;
} PrAdamwArgs;

/* out[0] = sum x[i]^2 in double, rounded once. One workgroup of PR_BLOCK. */
typedef struct {
  pr_u64 x, out;
  pr_u32 count;
} PrSumSquaresArgs;

/* x[i] = value. Grid: count. */
typedef struct {
  pr_u64 x;
  pr_u32 count;
  float value;
} PrFillArgs;

/* y = x as bytes (any dtype); x and y must not overlap. Work-item i copies bytes
 * [4i, 4i + 4) that lie below `bytes`. Grid: ceil(bytes / 4). */
typedef struct {
  pr_u64 x, y;
  pr_u32 bytes;
} PrCopyArgs;

/* x *= alpha. Grid: count. */
typedef struct {
  pr_u64 x;
  pr_u32 count;
  float alpha;
} PrScaleArgs;

/* ---- Transformer kernels (device/kernels.h). B batch, T steps, C channels, H heads,
 * D = C / H, V vocab, P positions; count = B * T tokens. */

/* out[i, :] = wte[tokens[i], :] + wpe[i % steps, :] for i < count. Grid: count * channels.
 * A token outside [0, vocab) stores (token << 32 | i + 1) at `status` (0 = none; the
 * host zeroes it before the launch) and its row is left as it was. */
typedef struct {
  pr_u64 tokens, wte, wpe, out, status;
  pr_u32 count, steps, channels, vocab;
} PrEmbeddingForwardArgs;

/* dwte = beta_wte * dwte + the rows of dout scattered by token; dwpe = beta_wpe * dwpe +
 * the rows of dout summed over the batch (rows t >= steps: scaled only). beta == 0
 * ignores old contents. Work-item i < vocab * channels owns dwte element i, the next
 * positions * channels own dwpe's: each sums its tokens in order (no atomics), so the
 * result is deterministic. Grid: (vocab + positions) * channels. `status` as above. */
typedef struct {
  pr_u64 dout, tokens, dwte, dwpe, status;
  pr_u32 count, steps, channels, vocab, positions;
  float beta_wte, beta_wpe;
  pr_u32 pad;
} PrEmbeddingBackwardArgs;

/* LayerNorm of each row of x (rows, cols) into y, keeping mean and rstd (rows).
 * One work-item per row. Grid: rows. */
typedef struct {
  pr_u64 x, weight, bias, y, mean, rstd;
  pr_u32 rows, cols;
  float eps;
  pr_u32 pad;
} PrLayernormForwardArgs;

/* LayerNorm's backward (device/kernels.h). Work-item i < rows computes row i of dx;
 * work-item rows + j sums column j of dweight and dbias over the rows in order.
 * Grid: rows + cols. */
typedef struct {
  pr_u64 dy, x, weight, mean, rstd, dx, dweight, dbias;
  pr_u32 rows, cols;
  float dx_beta, param_beta;
} PrLayernormBackwardArgs;

/* y = gelu(x) (GPT-2's tanh form); y may alias x. Grid: count. */
typedef struct {
  pr_u64 x, y;
  pr_u32 count;
} PrGeluArgs;

/* dx = dy * gelu'(x); dx may alias dy. Grid: count. */
typedef struct {
  pr_u64 x, dy, dx;
  pr_u32 count;
} PrGeluBackwardArgs;

/* z = x + y; z may alias x or y. Grid: count. */
typedef struct {
  pr_u64 x, y, z;
  pr_u32 count;
} PrAddArgs;

/* Causal attention over qkv (B, T, 3C) into out (B, T, C) and probs (B, H, T, T).
 * One work-item per query row (b, h, i). Grid: batch * heads * steps. */
typedef struct {
  pr_u64 qkv, out, probs;
  pr_u32 batch, steps, channels, heads;
} PrAttentionForwardArgs;

/* Attention's backward, in two dispatches with the same kernargs, each one work-item
 * per (b, h, row), grid batch * heads * steps:
 *   attention_backward     row i: dS_i into scratch and dQ_i = sum_j dS_ij K_j
 *   attention_backward_kv  row j: dK_j = sum_i dS_ij Q_i, dV_j = sum_i P_ij dO_i (i >= j)
 * The second reads the first's scratch, so it must run after it. */
typedef struct {
  pr_u64 dout, qkv, probs, dqkv, scratch;
  pr_u32 batch, steps, channels, heads;
} PrAttentionBackwardArgs;

/* ---- Mixed precision (device/kernels.h): bf16 is stored as its 16-bit pattern. The
 * bf16 kernels gemm_bf16, layernorm_forward_bf16, gelu_bf16, gelu_backward_bf16,
 * attention_forward_bf16 and attention_backward_bf16 (+ attention_backward_kv_bf16) take
 * the structs of their f32 twins above; which buffers hold bf16 is device/kernels.h's
 * contract. */

/* y = x element-wise: mode PR_CONVERT_NARROW f32 -> bf16 (rounded), PR_CONVERT_WIDEN
 * bf16 -> f32, PR_CONVERT_COPY16 / PR_CONVERT_COPY32 a copy of 2- or 4-byte elements.
 * Grid: count. */
#define PR_CONVERT_NARROW 0
#define PR_CONVERT_WIDEN 1
#define PR_CONVERT_COPY16 2
#define PR_CONVERT_COPY32 3
typedef struct {
  pr_u64 x, y;
  pr_u32 count, mode;
} PrConvertArgs;

/* y (rows, outs) = x (rows, ins) @ w^T + bias: x and w (outs, ins) bf16, bias f32, sums
 * in f32; y f32, or bf16 when y_bf16. Tiled like gemm: workgroup PR_GEMM_TILE x
 * PR_GEMM_TILE, grid round_up(outs) x round_up(rows). */
typedef struct {
  pr_u64 x, w, bias, y;
  pr_u32 rows, outs, ins, y_bf16;
} PrLinearArgs;

/* ---- Diagnostics (not kernels of the table). scratch_probe needs scratch: y[i] =
 * sum_{k < 16} table[(x[i] + 7k) & 255] with table[j] = (j * 2654435761) ^ i, all u32
 * wrapping, the table a private array indexed by data. Grid: count. */
typedef struct {
  pr_u64 x, y;
  pr_u32 count;
} PrScratchProbeArgs;

#ifdef __cplusplus
#include <cmath>
#include <cstddef>

namespace petaring::amd::gpu {

// Layout checks: these offsets are what the GPU code reads.
static_assert(sizeof(PrGemmArgs) == 56 && offsetof(PrGemmArgs, m) == 24 &&
              offsetof(PrGemmArgs, alpha) == 44);
static_assert(sizeof(PrBiasAddArgs) == 24);
static_assert(sizeof(PrBiasGradArgs) == 32 && offsetof(PrBiasGradArgs, beta) == 24);
static_assert(sizeof(PrReluArgs) == 24);
static_assert(sizeof(PrReluBackwardArgs) == 32);
static_assert(sizeof(PrSoftmaxXentForwardArgs) == 48 &&
              offsetof(PrSoftmaxXentForwardArgs, rows) == 40);
static_assert(sizeof(PrSoftmaxXentBackwardArgs) == 48 &&
              offsetof(PrSoftmaxXentBackwardArgs, scale) == 40);
static_assert(sizeof(PrSgdMomentumArgs) == 48 && offsetof(PrSgdMomentumArgs, nesterov) == 40);
static_assert(sizeof(PrAdamwArgs) == 64 && offsetof(PrAdamwArgs, bias2_sqrt) == 56);
static_assert(sizeof(PrSumSquaresArgs) == 24);
static_assert(sizeof(PrFillArgs) == 16 && offsetof(PrFillArgs, value) == 12);
static_assert(sizeof(PrCopyArgs) == 24);
static_assert(sizeof(PrScaleArgs) == 16 && offsetof(PrScaleArgs, alpha) == 12);
static_assert(sizeof(PrEmbeddingForwardArgs) == 56 &&
              offsetof(PrEmbeddingForwardArgs, vocab) == 52);
static_assert(sizeof(PrEmbeddingBackwardArgs) == 72 &&
              offsetof(PrEmbeddingBackwardArgs, beta_wpe) == 64);
static_assert(sizeof(PrLayernormForwardArgs) == 64 && offsetof(PrLayernormForwardArgs, eps) == 56);
static_assert(sizeof(PrLayernormBackwardArgs) == 80 &&
              offsetof(PrLayernormBackwardArgs, param_beta) == 76);
static_assert(sizeof(PrGeluArgs) == 24);
static_assert(sizeof(PrGeluBackwardArgs) == 32);
static_assert(sizeof(PrAddArgs) == 32);
static_assert(sizeof(PrAttentionForwardArgs) == 40);
static_assert(sizeof(PrAttentionBackwardArgs) == 56 &&
              offsetof(PrAttentionBackwardArgs, heads) == 52);
static_assert(sizeof(PrScratchProbeArgs) == 24);
static_assert(sizeof(PrConvertArgs) == 24 && offsetof(PrConvertArgs, mode) == 20);
static_assert(sizeof(PrLinearArgs) == 48 && offsetof(PrLinearArgs, y_bf16) == 44);

// AdamW's per-step scalars from the contract's (lr, beta1, beta2, eps, weight_decay, t),
// computed in double exactly as the cpu backend does.
inline PrAdamwArgs pr_make_adamw_args(pr_u64 param, pr_u64 grad, pr_u64 m, pr_u64 v,
                                      pr_u32 count, double lr, double beta1, double beta2,
                                      double eps, double weight_decay, long long t) {
  PrAdamwArgs args{};
  args.param = param;
  args.grad = grad;
  args.m = m;
  args.v = v;
  args.count = count;
  args.beta1 = static_cast<float>(beta1);
  args.beta2 = static_cast<float>(beta2);
  args.eps = static_cast<float>(eps);
  args.keep = static_cast<float>(1.0 - lr * weight_decay);
  args.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, static_cast<double>(t))));
  args.bias2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(t))));
  return args;
}

}  // namespace petaring::amd::gpu
#endif  // __cplusplus

#endif  /* PETARING_DEVICE_AMD_GPU_KERNARGS_H_ */
