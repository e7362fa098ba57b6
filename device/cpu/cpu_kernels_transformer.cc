// The cpu backend's transformer kernels (device/kernels.h, "Transformer kernels"): token
// and position embedding, LayerNorm, GELU, residual add and causal multi-head attention.
//
// Attention runs one (batch, head) pair per OpenMP task: oneDNN GEMMs over strided views
// of the packed qkv rows (no repacking copy) with the masked softmax between them, in
// blocks of 32 rows against the keys up to the block's last row (the masked upper
// triangle is not computed).
// Inside the parallel loop oneDNN runs each GEMM on the calling thread. The team size is
// the one cpu_blas.cc applied on this queue thread (set_blas_threads). Row-wise kernels
// (LayerNorm, GELU, add) split rows or elements over the same team. Their inner loops are
// `omp simd` (row sums reassociated across lanes); GELU and the softmax's exp ask for 16
// lanes, one AVX-512 register (GCC's default with -march=native is 8: about 1.3x slower
// for GELU's backward on this machine).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "device/cpu/cpu_blas.h"
#include "device/cpu/cpu_kernels.h"
#include "device/cpu/cpu_math.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

const int32_t* token_data(const Tensor& tokens, const char* kernel) {
  if (tokens.dtype != DType::kI32 || tokens.shape.rank() != 2) {
    PR_FAIL(kInvalidArgument, kernel, ": tokens must be i32 (B, T), got ", tokens.shape, " ",
            dtype_name(tokens.dtype));
  }
  return tokens.data<int32_t>();
}

void check_token(int32_t token, int64_t index, int64_t steps, int64_t vocab, const char* kernel) {
  if (token < 0 || token >= vocab) {
    PR_FAIL(kInvalidArgument, kernel, ": token ", token, " at (", index / steps, ", ",
            index % steps, ") is out of range [0, ", vocab,
            "); the data's token ids must be below the model's vocab");
  }
}


// x[0, count) = beta * x, where beta == 0 writes zeros whatever x held.
void scale_or_zero(float* x, int64_t count, float beta) {
  if (beta == 0.0f) {
    std::fill(x, x + count, 0.0f);
  } else if (beta != 1.0f) {
    for (int64_t i = 0; i < count; ++i) x[i] *= beta;
  }
}

void embedding_forward_kernel(const KernelArgs& args) {
  const char* kName = "embedding_forward";
  expect_kernel_args(args, 4, 0, 0, kName);
  const Tensor& tokens = args.tensors[0];  // (B, T)
  const int32_t* tok = token_data(tokens, kName);
  const float* wte = f32_data(args.tensors[1], kName, "wte");  // (V, C)
  const float* wpe = f32_data(args.tensors[2], kName, "wpe");  // (P, C)
  float* out = f32_data(args.tensors[3], kName, "out");        // (B, T, C)
  const int64_t steps = tokens.shape[1], vocab = args.tensors[1].shape[0];
  const int64_t c = args.tensors[1].shape[1];
  PR_CHECK(args.tensors[2].shape[0] >= steps && args.tensors[3].numel() == tokens.numel() * c)
      << kName << " wpe " << args.tensors[2].shape << ", out " << args.tensors[3].shape;
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    check_token(tok[i], i, steps, vocab, kName);
    const float* __restrict e = wte + tok[i] * c;
    const float* __restrict p = wpe + (i % steps) * c;
    float* __restrict o = out + i * c;
    for (int64_t j = 0; j < c; ++j) o[j] = e[j] + p[j];
  }
}

void embedding_backward_kernel(const KernelArgs& args) {
  const char* kName = "embedding_backward";
  expect_kernel_args(args, 4, 2, 0, kName);
  const float* dout = f32_data(args.tensors[0], kName, "dout");  // (B, T, C)
  const Tensor& tokens = args.tensors[1];                        // (B, T)
  const int32_t* tok = token_data(tokens, kName);
  float* dwte = f32_data(args.tensors[2], kName, "dwte");  // (V, C)
  float* dwpe = f32_data(args.tensors[3], kName, "dwpe");  // (P, C)
  const int64_t steps = tokens.shape[1], vocab = args.tensors[2].shape[0];
  const int64_t c = args.tensors[2].shape[1];
  PR_CHECK(args.tensors[3].shape[0] >= steps && args.tensors[0].numel() == tokens.numel() * c)
      << kName << " dwpe " << args.tensors[3].shape << ", dout " << args.tensors[0].shape;
  scale_or_zero(dwte, args.tensors[2].numel(), static_cast<float>(args.floats[0]));
  scale_or_zero(dwpe, args.tensors[3].numel(), static_cast<float>(args.floats[1]));
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    check_token(tok[i], i, steps, vocab, kName);
    const float* __restrict d = dout + i * c;
    float* __restrict e = dwte + tok[i] * c;
    float* __restrict p = dwpe + (i % steps) * c;
    for (int64_t j = 0; j < c; ++j) {
      e[j] += d[j];
      p[j] += d[j];
    }
  }
}

// Stores an f32 result: as it is, or rounded once to bf16.
inline void store_out(float* y, float value) { *y = value; }
inline void store_out(uint16_t* y, float value) { *y = cpu::bf16_bits(value); }

// layernorm_forward (Y f32) and layernorm_forward_bf16 (Y bf16): the same checks and the
// same f32 arithmetic; only the store of Y differs.
template <bool kBf16Out>
void layernorm_forward_any(const KernelArgs& args) {
  const char* kName = kBf16Out ? "layernorm_forward_bf16" : "layernorm_forward";
  expect_kernel_args(args, 6, 1, 0, kName);
  const Tensor& x_tensor = args.tensors[0];  // (N, C)
  PR_CHECK_EQ(x_tensor.shape.rank(), 2) << kName << " X " << x_tensor.shape;
  const int64_t rows = x_tensor.shape[0], c = x_tensor.shape[1];
  PR_CHECK(args.tensors[1].numel() == c && args.tensors[2].numel() == c &&
           args.tensors[3].numel() == rows * c && args.tensors[4].numel() == rows &&
           args.tensors[5].numel() == rows)
      << kName << " shapes for X " << x_tensor.shape;
  const float* x = f32_data(x_tensor, kName, "X");
  const float* __restrict w = f32_data(args.tensors[1], kName, "weight");
  const float* __restrict b = f32_data(args.tensors[2], kName, "bias");
  using Out = std::conditional_t<kBf16Out, uint16_t, float>;
  Out* y;
  if constexpr (kBf16Out) {
    y = &bf16_data(args.tensors[3], kName, "Y")->bits;
  } else {
    y = f32_data(args.tensors[3], kName, "Y");
  }
  float* mean = f32_data(args.tensors[4], kName, "mean");
  float* rstd = f32_data(args.tensors[5], kName, "rstd");
  const float eps = static_cast<float>(args.floats[0]);
#pragma omp parallel for schedule(static) num_threads(kernel_team(rows * c))
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict xi = x + i * c;
    Out* __restrict yi = y + i * c;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < c; ++j) sum += xi[j];
    const float m = sum / static_cast<float>(c);
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < c; ++j) var += (xi[j] - m) * (xi[j] - m);
    const float r = 1.0f / std::sqrt(var / static_cast<float>(c) + eps);
    for (int64_t j = 0; j < c; ++j) store_out(yi + j, (xi[j] - m) * r * w[j] + b[j]);
    mean[i] = m;
    rstd[i] = r;
  }
}

void layernorm_forward_kernel(const KernelArgs& args) { layernorm_forward_any<false>(args); }

void layernorm_backward_kernel(const KernelArgs& args) {
  const char* kName = "layernorm_backward";
  expect_kernel_args(args, 8, 2, 0, kName);
  const Tensor& x_tensor = args.tensors[1];  // (N, C)
  PR_CHECK_EQ(x_tensor.shape.rank(), 2) << kName << " X " << x_tensor.shape;
  const int64_t rows = x_tensor.shape[0], c = x_tensor.shape[1];
  PR_CHECK(args.tensors[0].numel() == rows * c && args.tensors[2].numel() == c &&
           args.tensors[3].numel() == rows && args.tensors[4].numel() == rows &&
           args.tensors[5].numel() == rows * c && args.tensors[6].numel() == c &&
           args.tensors[7].numel() == c)
      << kName << " shapes for X " << x_tensor.shape;
  const float* dy = f32_data(args.tensors[0], kName, "dY");
  const float* x = f32_data(x_tensor, kName, "X");
  const float* w = f32_data(args.tensors[2], kName, "weight");
  const float* mean = f32_data(args.tensors[3], kName, "mean");
  const float* rstd = f32_data(args.tensors[4], kName, "rstd");
  float* dx = f32_data(args.tensors[5], kName, "dX");
  float* dw = f32_data(args.tensors[6], kName, "dweight");
  float* db = f32_data(args.tensors[7], kName, "dbias");
  const float dx_beta = static_cast<float>(args.floats[0]);
  const float inv_c = 1.0f / static_cast<float>(c);
#pragma omp parallel for schedule(static) num_threads(kernel_team(rows * c))
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict dyi = dy + i * c;
    const float* __restrict xi = x + i * c;
    float* __restrict dxi = dx + i * c;
    const float m = mean[i], r = rstd[i];
    float g_mean = 0.0f, gx_mean = 0.0f;  // mean_c(g), mean_c(g * xhat)
#pragma omp simd reduction(+ : g_mean, gx_mean)
    for (int64_t j = 0; j < c; ++j) {
      const float g = dyi[j] * w[j];
      g_mean += g;
      gx_mean += g * (xi[j] - m) * r;
    }
    g_mean *= inv_c;
    gx_mean *= inv_c;
    for (int64_t j = 0; j < c; ++j) {
      const float xhat = (xi[j] - m) * r;
      const float grad = r * (dyi[j] * w[j] - g_mean - xhat * gx_mean);
      dxi[j] = dx_beta == 0.0f ? grad : dx_beta * dxi[j] + grad;
    }
  }
  scale_or_zero(dw, c, static_cast<float>(args.floats[1]));
  scale_or_zero(db, c, static_cast<float>(args.floats[1]));
  for (int64_t i = 0; i < rows; ++i) {  // column sums: rows in order, deterministic
    const float* __restrict dyi = dy + i * c;
    const float* __restrict xi = x + i * c;
    const float m = mean[i], r = rstd[i];
    for (int64_t j = 0; j < c; ++j) {
      dw[j] += dyi[j] * (xi[j] - m) * r;
      db[j] += dyi[j];
    }
  }
}

using cpu::gelu_slope;
using cpu::gelu_value;

void gelu_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "gelu");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK_EQ(args.tensors[1].numel(), count) << "gelu X and Y";
  const float* x = f32_data(args.tensors[0], "gelu", "X");
  float* y = f32_data(args.tensors[1], "gelu", "Y");  // may alias x
#pragma omp parallel for simd simdlen(16) schedule(static) num_threads(kernel_team(count))
  for (int64_t i = 0; i < count; ++i) {
    y[i] = gelu_value(x[i]);
  }
}

void gelu_backward_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 3, 0, 0, "gelu_backward");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count)
      << "gelu_backward X, dY and dX sizes";
  const float* __restrict x = f32_data(args.tensors[0], "gelu_backward", "X");
  const float* dy = f32_data(args.tensors[1], "gelu_backward", "dY");
  float* dx = f32_data(args.tensors[2], "gelu_backward", "dX");  // may alias dy
#pragma omp parallel for simd simdlen(16) schedule(static) num_threads(kernel_team(count))
  for (int64_t i = 0; i < count; ++i) {
    dx[i] = dy[i] * gelu_slope(x[i]);
  }
}

void add_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 3, 0, 0, "add");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count)
      << "add X, Y and Z sizes";
  const float* x = f32_data(args.tensors[0], "add", "X");
  const float* y = f32_data(args.tensors[1], "add", "Y");
  float* z = f32_data(args.tensors[2], "add", "Z");  // may alias x or y
#pragma omp parallel for schedule(static) num_threads(kernel_team(count))
  for (int64_t i = 0; i < count; ++i) z[i] = x[i] + y[i];
}

// Extents of one attention launch, read from qkv (B, T, 3C) and ints {heads}.
struct AttentionDims {
  int64_t batch, steps, channels, heads, head_dim;
};

AttentionDims attention_dims(const Tensor& qkv, const KernelArgs& args, const char* kernel) {
  PR_CHECK_EQ(qkv.shape.rank(), 3) << kernel << " qkv " << qkv.shape;
  AttentionDims d{qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3, args.ints[0], 0};
  PR_CHECK(d.heads > 0 && qkv.shape[2] == 3 * d.channels && d.channels % d.heads == 0)
      << kernel << " qkv " << qkv.shape << " heads " << d.heads;
  d.head_dim = d.channels / d.heads;
  return d;
}

void attention_forward_kernel(const KernelArgs& args) {
  const char* kName = "attention_forward";
  expect_kernel_args(args, 3, 0, 1, kName);
  const AttentionDims d = attention_dims(args.tensors[0], args, kName);
  const int64_t t = d.steps, c = d.channels, c3 = 3 * c;
  PR_CHECK(args.tensors[1].numel() == d.batch * t * c &&
           args.tensors[2].numel() == d.batch * d.heads * t * t)
      << kName << " out " << args.tensors[1].shape << ", probs " << args.tensors[2].shape;
  const float* qkv = f32_data(args.tensors[0], kName, "qkv");  // (B, T, 3C)
  float* out = f32_data(args.tensors[1], kName, "out");        // (B, T, C)
  float* probs = f32_data(args.tensors[2], kName, "probs");    // (B, H, T, T)
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.head_dim));
#pragma omp parallel for schedule(static) num_threads(kernel_team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    const float* q = qkv + b * t * c3 + h * d.head_dim;  // (T, D), row stride 3C
    cpu::attention_head_forward(q, q + c, q + 2 * c, c3, probs + bh * t * t,
                                out + b * t * c + h * d.head_dim, c, t, d.head_dim, scale);
  }
}

// Per (b, h), with P = probs, dO = dout's head slice and S the pre-softmax scores:
//   dV = P^T dO,  dP = dO V^T,  dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) * scale,
//   dQ = dS K,    dK = dS^T Q.
void attention_backward_kernel(const KernelArgs& args) {
  const char* kName = "attention_backward";
  expect_kernel_args(args, 5, 0, 1, kName);
  const AttentionDims d = attention_dims(args.tensors[1], args, kName);
  const int64_t t = d.steps, c = d.channels, c3 = 3 * c;
  PR_CHECK(args.tensors[0].numel() == d.batch * t * c &&
           args.tensors[2].numel() == d.batch * d.heads * t * t &&
           args.tensors[3].numel() == d.batch * t * c3 &&
           args.tensors[4].numel() == d.batch * d.heads * t * t)
      << kName << " dout " << args.tensors[0].shape << ", dqkv " << args.tensors[3].shape;
  const float* dout = f32_data(args.tensors[0], kName, "dout");  // (B, T, C)
  const float* qkv = f32_data(args.tensors[1], kName, "qkv");    // (B, T, 3C)
  const float* probs = f32_data(args.tensors[2], kName, "probs");  // (B, H, T, T)
  float* dqkv = f32_data(args.tensors[3], kName, "dqkv");          // (B, T, 3C)
  float* scratch = f32_data(args.tensors[4], kName, "scratch");    // (B, H, T, T)
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.head_dim));
#pragma omp parallel for schedule(static) num_threads(kernel_team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    const int64_t head = b * t * c3 + h * d.head_dim;
    const float* q = qkv + head;
    float* dq = dqkv + head;
    cpu::attention_head_backward(dout + b * t * c + h * d.head_dim, c, q, q + c, q + 2 * c, c3,
                                 probs + bh * t * t, dq, dq + c, dq + 2 * c, c3,
                                 scratch + bh * t * t, t, d.head_dim, scale);
  }
}

}  // namespace

namespace cpu {
namespace {

// Row i of the causal softmax in place: p[0..i] = softmax(p[0..i]), p[i+1..T) = 0.
void causal_softmax_row(float* __restrict p, int64_t i, int64_t steps) {
  float max = p[0];
#pragma omp simd reduction(max : max)
  for (int64_t j = 1; j <= i; ++j) max = std::max(max, p[j]);
  float sum = 0.0f;
#pragma omp simd simdlen(16) reduction(+ : sum)
  for (int64_t j = 0; j <= i; ++j) {
    p[j] = exp_approx(p[j] - max);
    sum += p[j];
  }
  const float inverse = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j <= i; ++j) p[j] *= inverse;
  std::fill(p + i + 1, p + steps, 0.0f);
}

// Rows per block of the causal attention: each block of rows multiplies only against the
// keys up to its last row, so about (1 + 1/n_blocks) / 2 of the full square is computed.
constexpr int64_t kAttentionRows = 32;

}  // namespace

void to_bf16(const float* x, int64_t ld_x, BF16* y, int64_t ld_y, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict xi = x + i * ld_x;
    uint16_t* __restrict yi = &y[i * ld_y].bits;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) yi[j] = bf16_bits(xi[j]);
  }
}

void to_f32(const BF16* x, int64_t ld_x, float* y, int64_t ld_y, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    const uint16_t* __restrict xi = &x[i * ld_x].bits;
    float* __restrict yi = y + i * ld_y;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) yi[j] = bf16_value(xi[j]);
  }
}

void attention_head_forward(const float* q, const float* k, const float* v, int64_t ld_qkv,
                            float* p, float* out, int64_t ld_out, int64_t t, int64_t d,
                            float scale) {
  for (int64_t r0 = 0; r0 < t; r0 += kAttentionRows) {
    const int64_t r1 = std::min(t, r0 + kAttentionRows), rows = r1 - r0;
    // Scores of rows [r0, r1) against keys [0, r1): the rest is masked.
    sgemm(false, true, rows, r1, d, scale, q + r0 * ld_qkv, ld_qkv, k, ld_qkv, 0.0f, p + r0 * t, t);
    for (int64_t i = r0; i < r1; ++i) causal_softmax_row(p + i * t, i, t);
    sgemm(false, false, rows, d, r1, 1.0f, p + r0 * t, t, v, ld_qkv, 0.0f, out + r0 * ld_out,
          ld_out);
  }
}

// With S the pre-softmax scores: dV = P^T dO, dP = dO V^T,
// dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) * scale, dQ = dS K, dK = dS^T Q. P and dS are
// lower triangular: row blocks of dP and dQ need keys up to the block's last row, column
// blocks of dV and dK need rows from the block's first column.
void attention_head_backward(const float* d_o, int64_t ld_do, const float* q, const float* k,
                             const float* v, int64_t ld_qkv, const float* p, float* dq,
                             float* dk, float* dv, int64_t ld_dqkv, float* ds, int64_t t,
                             int64_t d, float scale) {
  for (int64_t c0 = 0; c0 < t; c0 += kAttentionRows) {
    const int64_t cols = std::min(t, c0 + kAttentionRows) - c0;
    sgemm(true, false, cols, d, t - c0, 1.0f, p + c0 * t + c0, t, d_o + c0 * ld_do, ld_do, 0.0f,
          dv + c0 * ld_dqkv, ld_dqkv);
  }
  for (int64_t r0 = 0; r0 < t; r0 += kAttentionRows) {
    const int64_t r1 = std::min(t, r0 + kAttentionRows), rows = r1 - r0;
    sgemm(false, true, rows, r1, d, 1.0f, d_o + r0 * ld_do, ld_do, v, ld_qkv, 0.0f, ds + r0 * t, t);
    for (int64_t i = r0; i < r1; ++i) {
      const float* __restrict pi = p + i * t;
      float* __restrict dsi = ds + i * t;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j <= i; ++j) dot += pi[j] * dsi[j];
#pragma omp simd
      for (int64_t j = 0; j <= i; ++j) dsi[j] = pi[j] * (dsi[j] - dot) * scale;
      std::fill(dsi + i + 1, dsi + t, 0.0f);
    }
    sgemm(false, false, rows, d, r1, 1.0f, ds + r0 * t, t, k, ld_qkv, 0.0f, dq + r0 * ld_dqkv,
          ld_dqkv);
  }
  for (int64_t c0 = 0; c0 < t; c0 += kAttentionRows) {
    const int64_t cols = std::min(t, c0 + kAttentionRows) - c0;
    sgemm(true, false, cols, d, t - c0, 1.0f, ds + c0 * t + c0, t, q + c0 * ld_qkv, ld_qkv, 0.0f,
          dk + c0 * ld_dqkv, ld_dqkv);
  }
}

}  // namespace cpu

void layernorm_forward_bf16_kernel(const KernelArgs& args) { layernorm_forward_any<true>(args); }

void add_transformer_kernels(std::vector<CpuKernel>* table) {
  table->insert(table->end(), {
                                  {"embedding_forward", embedding_forward_kernel},
                                  {"embedding_backward", embedding_backward_kernel},
                                  {"layernorm_forward", layernorm_forward_kernel},
                                  {"layernorm_backward", layernorm_backward_kernel},
                                  {"gelu", gelu_kernel},
                                  {"gelu_backward", gelu_backward_kernel},
                                  {"add", add_kernel},
                                  {"attention_forward", attention_forward_kernel},
                                  {"attention_backward", attention_backward_kernel},
                              });
}

}  // namespace petaring
