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

/* Tree sum of partial[0, PR_BLOCK) into partial[0]; every work-item must call it. */
static inline void reduce_block(local double* partial, uint t) {
  workgroup_barrier();
  for (uint stride = PR_BLOCK / 2; stride > 0; stride >>= 1) {
    if (t < stride) partial[t] += partial[t + stride];
    workgroup_barrier();
  }
}

/* One output element per work-item, 16x16 tiles of op(A) and op(B) staged in LDS.
 * TODO(perf): register blocking and WMMA (gfx11) once there is a GPU to measure on. */
kernel PR_WORKGROUP_SIZE(PR_GEMM_TILE, PR_GEMM_TILE, 1)
void gemm(PrGemmArgs args) {
  PR_LDS float tile_a[PR_GEMM_TILE][PR_GEMM_TILE];
  PR_LDS float tile_b[PR_GEMM_TILE][PR_GEMM_TILE];
  const global float* a = (const global float*)args.a;  /* (m, k) or (k, m) */
  const global float* b = (const global float*)args.b;  /* (k, n) or (n, k) */
  global float* c = (global float*)args.c;              /* (m, n) */
  const uint tx = local_id_x(), ty = local_id_y();
  const uint col = __builtin_amdgcn_workgroup_id_x() * PR_GEMM_TILE + tx;
  const uint row = __builtin_amdgcn_workgroup_id_y() * PR_GEMM_TILE + ty;
  float acc = 0.0f;
  for (uint k0 = 0; k0 < args.k; k0 += PR_GEMM_TILE) {
    const uint ka = k0 + tx, kb = k0 + ty;
    float va = 0.0f, vb = 0.0f;
    if (row < args.m && ka < args.k) {
      va = args.trans_a ? a[(ulong)ka * args.m + row] : a[(ulong)row * args.k + ka];
    }
    if (kb < args.k && col < args.n) {
      vb = args.trans_b ? b[(ulong)col * args.k + kb] : b[(ulong)kb * args.n + col];
    }
    tile_a[ty][tx] = va;
    tile_b[ty][tx] = vb;
    workgroup_barrier();
    for (uint kk = 0; kk < PR_GEMM_TILE; ++kk) acc += tile_a[ty][kk] * tile_b[kk][tx];
    workgroup_barrier();
  }
  if (row < args.m && col < args.n) {
    global float* out = c + (ulong)row * args.n + col;
    *out = args.beta == 0.0f ? args.alpha * acc : args.alpha * acc + args.beta * *out;
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
