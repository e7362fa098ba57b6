/* The kernel table of device/kernels.h for AMD GPUs, in OpenCL C 1.2 as stock clang-16
 * compiles it: -target amdgcn-amd-amdhsa -mcpu=gfx1100 -nogpulib. No device library is
 * linked, so ids come from __builtin_amdgcn_* and only math that LLVM lowers to
 * instructions is used (add/mul/fma, sqrt, exp, log in f32; add/div in f64).
 *
 * Every kernel takes its kernarg struct (kernargs.h) by value and has a fixed
 * workgroup size; counts and launch shapes are documented there. None of this has run
 * on a real GPU yet: TODO(hw): run on a gfx1100 board; the mock KFD runs CPU twins.
 */
#include "device/amd/gpu/kernargs.h"

/* host_kernels.cc compiles this file as C++ for the CPU and defines these first. */
#ifdef __OPENCL_C_VERSION__
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define PR_LDS local /* a workgroup-shared (LDS) array */
#define PR_WORKGROUP_SIZE(x, y, z) __attribute__((reqd_work_group_size(x, y, z)))
#define pr_float_from_bits(u) __builtin_astype((u), float)
#define pr_bits_from_float(f) __builtin_astype((f), uint)
#endif

#define BLOCK_1D PR_WORKGROUP_SIZE(PR_BLOCK, 1, 1)

static inline uint local_id_x(void) { return __builtin_amdgcn_workitem_id_x(); }
static inline uint local_id_y(void) { return __builtin_amdgcn_workitem_id_y(); }
static inline uint global_id_1d(void) {
  return __builtin_amdgcn_workgroup_id_x() * PR_BLOCK + __builtin_amdgcn_workitem_id_x();
}

/* Every work-item of the workgroup arrives here before any leaves, and sees the LDS
 * writes made before it. */
static inline void workgroup_barrier(void) {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}

/* ---- bf16 storage (device/kernels.h, "Mixed precision"): the top half of an f32; f32 is
 * rounded to nearest, ties to even, NaN kept quiet, exactly as runtime/dtype.h does. */
static inline float bf16_value(ushort bits) { return pr_float_from_bits((uint)bits << 16); }
static inline ushort bf16_bits(float value) {
  const uint u = pr_bits_from_float(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
  return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Element i of a buffer of f32, or of bf16 when `bf16`. The kernels that come in an f32
 * and a bf16 form share one body (a static inline function taking `bf16`) that the two
 * kernels call with a constant, so each is compiled for its storage alone. */
static inline float load(ulong buffer, ulong i, bool bf16) {
  return bf16 ? bf16_value(((const global ushort*)buffer)[i]) : ((const global float*)buffer)[i];
}
static inline void store(ulong buffer, ulong i, float value, bool bf16) {
  if (bf16) {
    ((global ushort*)buffer)[i] = bf16_bits(value);
  } else {
    ((global float*)buffer)[i] = value;
  }
}

/* The f32 kernel `name` and its twin `name`_bf16, both 1-D, over `name`_body. */
#define PR_F32_AND_BF16_KERNELS(name, Args)                            \
  kernel BLOCK_1D void name(Args args) { name##_body(args, false); }   \
  kernel BLOCK_1D void name##_bf16(Args args) { name##_body(args, true); }

/* Tree sum of partial[0, PR_BLOCK) into partial[0]; every work-item must call it. */
static inline void reduce_block(local double* partial, uint t) {
  workgroup_barrier();
  for (uint stride = PR_BLOCK / 2; stride > 0; stride >>= 1) {
    if (t < stride) partial[t] += partial[t + stride];
    workgroup_barrier();
  }
}

/* The (row, col) element of op(A) @ op(B) for this work-item, summed in f32: one output
 * element per work-item, 16x16 tiles of op(A) and op(B) staged in LDS (`tile_a`,
 * `tile_b`, declared by the kernel). A and B are f32, or bf16 when `bf16`. Every
 * work-item of the workgroup must call it (barriers).
 * TODO(perf): register blocking and WMMA (gfx11) once there is a GPU to measure on. */
static inline float gemm_tile(ulong a, ulong b, uint m, uint n, uint k, uint trans_a,
                              uint trans_b, bool bf16, local float (*tile_a)[PR_GEMM_TILE],
                              local float (*tile_b)[PR_GEMM_TILE]) {
  const uint tx = local_id_x(), ty = local_id_y();
  const uint col = __builtin_amdgcn_workgroup_id_x() * PR_GEMM_TILE + tx;
  const uint row = __builtin_amdgcn_workgroup_id_y() * PR_GEMM_TILE + ty;
  float acc = 0.0f;
  for (uint k0 = 0; k0 < k; k0 += PR_GEMM_TILE) {
    const uint ka = k0 + tx, kb = k0 + ty;
    float va = 0.0f, vb = 0.0f;
    if (row < m && ka < k) va = load(a, trans_a ? (ulong)ka * m + row : (ulong)row * k + ka, bf16);
    if (kb < k && col < n) vb = load(b, trans_b ? (ulong)col * k + kb : (ulong)kb * n + col, bf16);
    tile_a[ty][tx] = va;
    tile_b[ty][tx] = vb;
    workgroup_barrier();
    for (uint kk = 0; kk < PR_GEMM_TILE; ++kk) acc += tile_a[ty][kk] * tile_b[kk][tx];
    workgroup_barrier();
  }
  return acc;
}

/* C (f32) = alpha * op(A) @ op(B) + beta * C, A and B f32 or bf16. */
static inline void gemm_body(PrGemmArgs args, bool bf16, local float (*tile_a)[PR_GEMM_TILE],
                             local float (*tile_b)[PR_GEMM_TILE]) {
  const float acc = gemm_tile(args.a, args.b, args.m, args.n, args.k, args.trans_a,
                              args.trans_b, bf16, tile_a, tile_b);
  const uint col = __builtin_amdgcn_workgroup_id_x() * PR_GEMM_TILE + local_id_x();
  const uint row = __builtin_amdgcn_workgroup_id_y() * PR_GEMM_TILE + local_id_y();
  if (row < args.m && col < args.n) {
    global float* out = (global float*)args.c + (ulong)row * args.n + col;
    *out = args.beta == 0.0f ? args.alpha * acc : args.alpha * acc + args.beta * *out;
  }
}

kernel PR_WORKGROUP_SIZE(PR_GEMM_TILE, PR_GEMM_TILE, 1)
void gemm(PrGemmArgs args) {
  PR_LDS float tile_a[PR_GEMM_TILE][PR_GEMM_TILE];
  PR_LDS float tile_b[PR_GEMM_TILE][PR_GEMM_TILE];
  gemm_body(args, false, tile_a, tile_b);
}

kernel PR_WORKGROUP_SIZE(PR_GEMM_TILE, PR_GEMM_TILE, 1)
void gemm_bf16(PrGemmArgs args) {
  PR_LDS float tile_a[PR_GEMM_TILE][PR_GEMM_TILE];
  PR_LDS float tile_b[PR_GEMM_TILE][PR_GEMM_TILE];
  gemm_body(args, true, tile_a, tile_b);
}

/* y = x @ w^T + bias (kernargs.h), rounded once to bf16 when y_bf16. */
kernel PR_WORKGROUP_SIZE(PR_GEMM_TILE, PR_GEMM_TILE, 1)
void linear_bf16(PrLinearArgs args) {
  PR_LDS float tile_a[PR_GEMM_TILE][PR_GEMM_TILE];
  PR_LDS float tile_b[PR_GEMM_TILE][PR_GEMM_TILE];
  const float acc = gemm_tile(args.x, args.w, args.rows, args.outs, args.ins, 0, 1, true, tile_a,
                              tile_b);
  const uint col = __builtin_amdgcn_workgroup_id_x() * PR_GEMM_TILE + local_id_x();
  const uint row = __builtin_amdgcn_workgroup_id_y() * PR_GEMM_TILE + local_id_y();
  if (row < args.rows && col < args.outs) {
    const float value = acc + ((const global float*)args.bias)[col];
    store(args.y, (ulong)row * args.outs + col, value, args.y_bf16 != 0);
  }
}

kernel BLOCK_1D void bias_add(PrBiasAddArgs args) {
  const uint i = global_id_1d();
  if (i >= args.rows * args.cols) return;
  global float* y = (global float*)args.y;
  const global float* bias = (const global float*)args.bias;
  y[i] += bias[i % args.cols];
}

kernel BLOCK_1D void bias_grad(PrBiasGradArgs args) {
  const uint j = global_id_1d();
  if (j >= args.cols) return;
  const global float* dy = (const global float*)args.dy;
  global float* dbias = (global float*)args.dbias;
  float sum = args.beta == 0.0f ? 0.0f : args.beta * dbias[j];
  for (uint i = 0; i < args.rows; ++i) sum += dy[(ulong)i * args.cols + j];
  dbias[j] = sum;
}

kernel BLOCK_1D void relu(PrReluArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  const float x = ((const global float*)args.x)[i];
  ((global float*)args.y)[i] = x < 0.0f ? 0.0f : x;  /* NaN stays NaN */
}

kernel BLOCK_1D void relu_backward(PrReluBackwardArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  const float y = ((const global float*)args.y)[i];
  const float dy = ((const global float*)args.dy)[i];
  ((global float*)args.dx)[i] = y > 0.0f ? dy : 0.0f;
}

/* Records the first bad label seen (any one, when several race). */
static inline void report_label(ulong status, uint row, int label) {
  if (status != 0) *(volatile global ulong*)status = (ulong)(uint)label << 32 | (row + 1);
}

kernel BLOCK_1D void softmax_xent_forward(PrSoftmaxXentForwardArgs args) {
  PR_LDS double partial[PR_BLOCK];
  const uint t = local_id_x();
  const global float* logits = (const global float*)args.logits;
  const global int* labels = (const global int*)args.labels;
  global float* probs = (global float*)args.probs;
  double total = 0.0;
  for (uint r = t; r < args.rows; r += PR_BLOCK) {
    const global float* x = logits + (ulong)r * args.cols;
    global float* p = probs + (ulong)r * args.cols;
    const int label = labels[r];
    if (label < 0 || (uint)label >= args.cols) {
      report_label(args.status, r, label);
      continue;
    }
    float max = x[0];
    for (uint j = 1; j < args.cols; ++j) max = x[j] > max ? x[j] : max;
    float sum = 0.0f;
    for (uint j = 0; j < args.cols; ++j) {
      p[j] = __builtin_expf(x[j] - max);
      sum += p[j];
    }
    const float inverse = 1.0f / sum;
    for (uint j = 0; j < args.cols; ++j) p[j] *= inverse;
    /* -log(p[label]) = log(sum) - (x[label] - max): finite where p[label] underflows. */
    total += (double)__builtin_logf(sum) - (double)(x[label] - max);
  }
  partial[t] = total;
  reduce_block(partial, t);
  if (t == 0) {
    ((global float*)args.loss)[0] =
        args.rows > 0 ? (float)(partial[0] / (double)args.rows) : 0.0f;
  }
}

kernel BLOCK_1D void softmax_xent_backward(PrSoftmaxXentBackwardArgs args) {
  const uint i = global_id_1d();
  if (i >= args.rows * args.cols) return;
  const uint row = i / args.cols, col = i % args.cols;
  const int label = ((const global int*)args.labels)[row];
  if (label < 0 || (uint)label >= args.cols) {
    report_label(args.status, row, label);
    return;
  }
  const float p = ((const global float*)args.probs)[i];
  ((global float*)args.dlogits)[i] = ((uint)label == col ? p - 1.0f : p) * args.scale;
}

kernel BLOCK_1D void sgd_momentum(PrSgdMomentumArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  global float* param = (global float*)args.param;
  global float* velocity = (global float*)args.velocity;
  const float grad = ((const global float*)args.grad)[i];
  /* PyTorch adds weight_decay * param only when weight_decay != 0. */
  const float g = args.weight_decay != 0.0f ? grad + args.weight_decay * param[i] : grad;
  const float v = args.momentum * velocity[i] + g;
  velocity[i] = v;
  param[i] -= args.lr * (args.nesterov ? g + args.momentum * v : v);
}

kernel BLOCK_1D void adamw(PrAdamwArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  global float* param = (global float*)args.param;
  global float* m = (global float*)args.m;
  global float* v = (global float*)args.v;
  const float g = ((const global float*)args.grad)[i];
  const float p = param[i] * args.keep;
  const float mi = args.beta1 * m[i] + (1.0f - args.beta1) * g;
  const float vi = args.beta2 * v[i] + (1.0f - args.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = p - args.step_size * (mi / (__builtin_sqrtf(vi) / args.bias2_sqrt + args.eps));
}

kernel BLOCK_1D void sum_squares(PrSumSquaresArgs args) {
  PR_LDS double partial[PR_BLOCK];
  const uint t = local_id_x();
  const global float* x = (const global float*)args.x;
  double sum = 0.0;
  for (uint i = t; i < args.count; i += PR_BLOCK) sum += (double)x[i] * (double)x[i];
  partial[t] = sum;
  reduce_block(partial, t);
  if (t == 0) ((global float*)args.out)[0] = (float)partial[0];
}

kernel BLOCK_1D void fill(PrFillArgs args) {
  const uint i = global_id_1d();
  if (i < args.count) ((global float*)args.x)[i] = args.value;
}

kernel BLOCK_1D void copy(PrCopyArgs args) {
  const ulong first = (ulong)global_id_1d() * 4;  /* 64-bit: first + 4 may pass 2^32 */
  const global uchar* x = (const global uchar*)args.x;
  global uchar* y = (global uchar*)args.y;
  for (ulong i = first; i < first + 4 && i < args.bytes; ++i) y[i] = x[i];
}

kernel BLOCK_1D void scale(PrScaleArgs args) {
  const uint i = global_id_1d();
  if (i < args.count) ((global float*)args.x)[i] *= args.alpha;
}

/* ---- Transformer kernels. Simple loops, one work-item per output row or element,
 * summing in the cpu backend's order so that results match it closely.
 * TODO(perf): LDS tiling, and attention blocked over rows, once a GPU can measure it. */

/* Records a token outside [0, vocab) at flat position `index` (any one, when several race). */
static inline void report_token(ulong status, uint index, int token) {
  if (status != 0) *(volatile global ulong*)status = (ulong)(uint)token << 32 | (index + 1);
}

kernel BLOCK_1D void embedding_forward(PrEmbeddingForwardArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count * args.channels) return;
  const uint row = i / args.channels, j = i % args.channels;
  const int token = ((const global int*)args.tokens)[row];
  if (token < 0 || (uint)token >= args.vocab) {
    if (j == 0) report_token(args.status, row, token);
    return;
  }
  const global float* wte = (const global float*)args.wte;
  const global float* wpe = (const global float*)args.wpe;
  ((global float*)args.out)[i] = wte[(ulong)token * args.channels + j] +
                                 wpe[(ulong)(row % args.steps) * args.channels + j];
}

kernel BLOCK_1D void embedding_backward(PrEmbeddingBackwardArgs args) {
  const uint i = global_id_1d();
  const uint table = args.vocab * args.channels;
  if (i >= table + args.positions * args.channels) return;
  const global float* dout = (const global float*)args.dout;
  const global int* tokens = (const global int*)args.tokens;
  const uint c = args.channels;
  if (i < table) {  /* dwte[v, j]: the rows of dout whose token is v, in order */
    const uint v = i / c, j = i % c;
    global float* dwte = (global float*)args.dwte;
    float sum = args.beta_wte == 0.0f ? 0.0f : args.beta_wte * dwte[i];
    for (uint n = 0; n < args.count; ++n) {
      const int token = tokens[n];
      if (token < 0 || (uint)token >= args.vocab) {
        if (i == 0) report_token(args.status, n, token);
      } else if ((uint)token == v) {
        sum += dout[(ulong)n * c + j];
      }
    }
    dwte[i] = sum;
    return;
  }
  const uint k = i - table, p = k / c, j = k % c;  /* dwpe[p, j]: position p of each sequence */
  global float* dwpe = (global float*)args.dwpe;
  float sum = args.beta_wpe == 0.0f ? 0.0f : args.beta_wpe * dwpe[k];
  if (p < args.steps) {
    for (uint n = p; n < args.count; n += args.steps) sum += dout[(ulong)n * c + j];
  }
  dwpe[k] = sum;
}

/* Y is f32, or bf16 when `bf16` (X, weight, bias, mean, rstd and the arithmetic f32). */
static inline void layernorm_forward_body(PrLayernormForwardArgs args, bool bf16) {
  const uint r = global_id_1d();
  if (r >= args.rows) return;
  const uint c = args.cols;
  const global float* x = (const global float*)args.x + (ulong)r * c;
  const global float* w = (const global float*)args.weight;
  const global float* b = (const global float*)args.bias;
  float sum = 0.0f;
  for (uint j = 0; j < c; ++j) sum += x[j];
  const float m = sum / (float)c;
  float var = 0.0f;
  for (uint j = 0; j < c; ++j) var += (x[j] - m) * (x[j] - m);
  const float rstd = 1.0f / __builtin_sqrtf(var / (float)c + args.eps);
  for (uint j = 0; j < c; ++j) store(args.y, (ulong)r * c + j, (x[j] - m) * rstd * w[j] + b[j], bf16);
  ((global float*)args.mean)[r] = m;
  ((global float*)args.rstd)[r] = rstd;
}

PR_F32_AND_BF16_KERNELS(layernorm_forward, PrLayernormForwardArgs)

kernel BLOCK_1D void layernorm_backward(PrLayernormBackwardArgs args) {
  const uint i = global_id_1d();
  if (i >= args.rows + args.cols) return;
  const uint c = args.cols;
  const global float* dy = (const global float*)args.dy;
  const global float* x = (const global float*)args.x;
  const global float* mean = (const global float*)args.mean;
  const global float* rstd = (const global float*)args.rstd;
  if (i < args.rows) {  /* row i of dX */
    const global float* w = (const global float*)args.weight;
    const global float* dyi = dy + (ulong)i * c;
    const global float* xi = x + (ulong)i * c;
    global float* dxi = (global float*)args.dx + (ulong)i * c;
    const float m = mean[i], r = rstd[i];
    float g_mean = 0.0f, gx_mean = 0.0f;
    for (uint j = 0; j < c; ++j) {
      const float g = dyi[j] * w[j];
      g_mean += g;
      gx_mean += g * (xi[j] - m) * r;
    }
    const float inv_c = 1.0f / (float)c;
    g_mean *= inv_c;
    gx_mean *= inv_c;
    for (uint j = 0; j < c; ++j) {
      const float xhat = (xi[j] - m) * r;
      const float grad = r * (dyi[j] * w[j] - g_mean - xhat * gx_mean);
      dxi[j] = args.dx_beta == 0.0f ? grad : args.dx_beta * dxi[j] + grad;
    }
    return;
  }
  const uint j = i - args.rows;  /* column j of dweight and dbias, rows in order */
  global float* dw = (global float*)args.dweight;
  global float* db = (global float*)args.dbias;
  float sw = args.param_beta == 0.0f ? 0.0f : args.param_beta * dw[j];
  float sb = args.param_beta == 0.0f ? 0.0f : args.param_beta * db[j];
  for (uint r = 0; r < args.rows; ++r) {
    const float g = dy[(ulong)r * c + j];
    sw += g * (x[(ulong)r * c + j] - mean[r]) * rstd[r];
    sb += g;
  }
  dw[j] = sw;
  db[j] = sb;
}

/* tanh(u) = 1 - 2 / (1 + e^(2u)): e^(2u) = inf gives 1, e^(2u) = 0 gives -1. */
static inline float tanh_f32(float u) { return 1.0f - 2.0f / (1.0f + __builtin_expf(2.0f * u)); }

#define PR_GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */
#define PR_GELU_CUBIC 0.044715f

/* X and Y f32, or bf16 when `bf16`; computed in f32. */
static inline void gelu_body(PrGeluArgs args, bool bf16) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  const float v = load(args.x, i, bf16);
  const float th = tanh_f32(PR_GELU_SCALE * (v + PR_GELU_CUBIC * v * v * v));
  store(args.y, i, 0.5f * v * (1.0f + th), bf16);
}

PR_F32_AND_BF16_KERNELS(gelu, PrGeluArgs)

/* X f32, or bf16 when `bf16`; dY and dX f32. */
static inline void gelu_backward_body(PrGeluBackwardArgs args, bool bf16) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  const float v = load(args.x, i, bf16);
  const float th = tanh_f32(PR_GELU_SCALE * (v + PR_GELU_CUBIC * v * v * v));
  const float dth = (1.0f - th * th) * PR_GELU_SCALE * (1.0f + 3.0f * PR_GELU_CUBIC * v * v);
  const float dy = ((const global float*)args.dy)[i];
  ((global float*)args.dx)[i] = dy * (0.5f * (1.0f + th) + 0.5f * v * dth);
}

PR_F32_AND_BF16_KERNELS(gelu_backward, PrGeluBackwardArgs)

kernel BLOCK_1D void add(PrAddArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  const float x = ((const global float*)args.x)[i];
  const float y = ((const global float*)args.y)[i];
  ((global float*)args.z)[i] = x + y;
}

/* Splits the flat work-item id of the attention kernels into (b, h, row). */
typedef struct {
  uint b, h, row, head_dim;
  ulong head;   /* offset of the head's q columns in qkv row 0 of sequence b */
  ulong square; /* offset of the (b, h) (T, T) block in probs */
} PrAttentionItem;

static inline PrAttentionItem attention_item(uint i, uint steps, uint channels, uint heads) {
  PrAttentionItem a;
  a.row = i % steps;
  a.h = i / steps % heads;
  a.b = i / steps / heads;
  a.head_dim = channels / heads;
  a.head = (ulong)a.b * steps * 3 * channels + (ulong)a.h * a.head_dim;
  a.square = ((ulong)a.b * heads + a.h) * steps * steps;
  return a;
}

/* The scaled score q_row . k_j of one query row (qkv f32, or bf16 when `bf16`). */
static inline float attention_score(ulong qkv, PrAttentionItem a, uint j, uint c3, uint c,
                                    float scale, bool bf16) {
  const ulong q = a.head + (ulong)a.row * c3, k = a.head + (ulong)j * c3 + c;
  float dot = 0.0f;
  for (uint d = 0; d < a.head_dim; ++d) dot += load(qkv, q + d, bf16) * load(qkv, k + d, bf16);
  return dot * scale;
}

/* One query row: the scores are computed three times (their max, the softmax's sum, the
 * probabilities), so nothing but the probabilities is written and bf16 storage keeps f32
 * scores; the f32 results are those of computing them once (the same operations in the
 * same order). qkv, out and probs f32, or bf16 when `bf16`; out is summed from the stored
 * probabilities (the cpu backend's bf16 attention sums the unrounded ones: the two differ
 * within bf16 rounding). */
static inline void attention_forward_body(PrAttentionForwardArgs args, bool bf16) {
  const uint i = global_id_1d();
  if (i >= args.batch * args.heads * args.steps) return;
  const uint t = args.steps, c = args.channels, c3 = 3 * args.channels;
  const PrAttentionItem a = attention_item(i, t, c, args.heads);
  const ulong p = a.square + (ulong)a.row * t;  /* the row of probs */
  const float scale = 1.0f / __builtin_sqrtf((float)a.head_dim);
  float max = 0.0f;
  for (uint j = 0; j <= a.row; ++j) {
    const float s = attention_score(args.qkv, a, j, c3, c, scale, bf16);
    max = j == 0 || s > max ? s : max;
  }
  float sum = 0.0f;
  for (uint j = 0; j <= a.row; ++j) {
    sum += __builtin_expf(attention_score(args.qkv, a, j, c3, c, scale, bf16) - max);
  }
  const float inverse = 1.0f / sum;
  for (uint j = 0; j <= a.row; ++j) {
    const float e = __builtin_expf(attention_score(args.qkv, a, j, c3, c, scale, bf16) - max);
    store(args.probs, p + j, e * inverse, bf16);
  }
  for (uint j = a.row + 1; j < t; ++j) store(args.probs, p + j, 0.0f, bf16);
  const ulong out = ((ulong)a.b * t + a.row) * c + (ulong)a.h * a.head_dim;
  for (uint d = 0; d < a.head_dim; ++d) {
    float acc = 0.0f;
    for (uint j = 0; j <= a.row; ++j) {
      acc += load(args.probs, p + j, bf16) * load(args.qkv, a.head + (ulong)j * c3 + 2 * c + d, bf16);
    }
    store(args.out, out + d, acc, bf16);
  }
}

PR_F32_AND_BF16_KERNELS(attention_forward, PrAttentionForwardArgs)

/* Row i of (b, h): dP_ij = dO_i . V_j, dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) / sqrt(D)
 * for j <= i (0 above), then dQ_i = sum_j dS_ij K_j. qkv and probs f32, or bf16 when
 * `bf16`; dout, dqkv and scratch f32. */
static inline void attention_backward_body(PrAttentionBackwardArgs args, bool bf16) {
  const uint i = global_id_1d();
  if (i >= args.batch * args.heads * args.steps) return;
  const uint t = args.steps, c = args.channels, c3 = 3 * args.channels;
  const PrAttentionItem a = attention_item(i, t, c, args.heads);
  const global float* d_o = (const global float*)args.dout + ((ulong)a.b * t + a.row) * c +
                            (ulong)a.h * a.head_dim;
  const ulong p = a.square + (ulong)a.row * t;
  global float* ds = (global float*)args.scratch + a.square + (ulong)a.row * t;
  const float scale = 1.0f / __builtin_sqrtf((float)a.head_dim);
  float dot = 0.0f;
  for (uint j = 0; j <= a.row; ++j) {
    const ulong v = a.head + (ulong)j * c3 + 2 * c;
    float dp = 0.0f;
    for (uint d = 0; d < a.head_dim; ++d) dp += d_o[d] * load(args.qkv, v + d, bf16);
    ds[j] = dp;
    dot += load(args.probs, p + j, bf16) * dp;
  }
  for (uint j = 0; j <= a.row; ++j) ds[j] = load(args.probs, p + j, bf16) * (ds[j] - dot) * scale;
  for (uint j = a.row + 1; j < t; ++j) ds[j] = 0.0f;
  global float* dq = (global float*)args.dqkv + a.head + (ulong)a.row * c3;
  for (uint d = 0; d < a.head_dim; ++d) {
    float acc = 0.0f;
    for (uint j = 0; j <= a.row; ++j) acc += ds[j] * load(args.qkv, a.head + (ulong)j * c3 + c + d, bf16);
    dq[d] = acc;
  }
}

PR_F32_AND_BF16_KERNELS(attention_backward, PrAttentionBackwardArgs)

/* Row j of (b, h), after attention_backward: dK_j = sum_{i >= j} dS_ij Q_i and
 * dV_j = sum_{i >= j} P_ij dO_i. qkv and probs f32, or bf16 when `bf16`. */
static inline void attention_backward_kv_body(PrAttentionBackwardArgs args, bool bf16) {
  const uint n = global_id_1d();
  if (n >= args.batch * args.heads * args.steps) return;
  const uint t = args.steps, c = args.channels, c3 = 3 * args.channels;
  const PrAttentionItem a = attention_item(n, t, c, args.heads);
  const global float* dout = (const global float*)args.dout + (ulong)a.b * t * c +
                             (ulong)a.h * a.head_dim;
  const global float* ds = (const global float*)args.scratch + a.square;
  global float* dk = (global float*)args.dqkv + a.head + (ulong)a.row * c3 + c;
  global float* dv = dk + c;
  for (uint d = 0; d < a.head_dim; ++d) {
    float k_acc = 0.0f, v_acc = 0.0f;
    for (uint i = a.row; i < t; ++i) {
      k_acc += ds[(ulong)i * t + a.row] * load(args.qkv, a.head + (ulong)i * c3 + d, bf16);
      v_acc += load(args.probs, a.square + (ulong)i * t + a.row, bf16) * dout[(ulong)i * c + d];
    }
    dk[d] = k_acc;
    dv[d] = v_acc;
  }
}

PR_F32_AND_BF16_KERNELS(attention_backward_kv, PrAttentionBackwardArgs)

/* y = x element-wise (kernargs.h, PrConvertArgs). */
kernel BLOCK_1D void convert(PrConvertArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  if (args.mode == PR_CONVERT_NARROW) {
    ((global ushort*)args.y)[i] = bf16_bits(((const global float*)args.x)[i]);
  } else if (args.mode == PR_CONVERT_WIDEN) {
    ((global float*)args.y)[i] = bf16_value(((const global ushort*)args.x)[i]);
  } else if (args.mode == PR_CONVERT_COPY16) {
    ((global ushort*)args.y)[i] = ((const global ushort*)args.x)[i];
  } else {
    ((global uint*)args.y)[i] = ((const global uint*)args.x)[i];
  }
}

/* Diagnostic (kernargs.h): its 1 KiB private table, indexed by data, is too large for
 * registers and, for a workgroup of PR_BLOCK, for LDS, so the compiler puts it in scratch
 * (the code-object test checks the descriptor asks for it). The mock KFD and the hardware
 * suite run it to check a queue's scratch set-up. */
kernel BLOCK_1D void scratch_probe(PrScratchProbeArgs args) {
  const uint i = global_id_1d();
  if (i >= args.count) return;
  uint table[256];
  for (uint j = 0; j < 256; ++j) table[j] = (j * 2654435761u) ^ i;
  const uint start = ((const global uint*)args.x)[i];
  uint acc = 0;
  for (uint k = 0; k < 16; ++k) acc += table[(start + 7 * k) & 255];
  ((global uint*)args.y)[i] = acc;
}
