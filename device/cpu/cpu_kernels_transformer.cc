// The cpu backend's transformer kernels (device/kernels.h, "Transformer kernels"): token
// and position embedding, LayerNorm, GELU, residual add and causal multi-head attention.
//
// Attention runs one (batch, head) pair per OpenMP task: two oneDNN GEMMs over strided
// views of the packed qkv rows (no repacking copy) with the masked softmax between them.
// Inside the parallel loop oneDNN runs each GEMM on the calling thread. The team size is
// the one cpu_blas.cc applied on this queue thread (set_blas_threads). Row-wise kernels
// (LayerNorm, GELU, add) split rows or elements over the same team.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "device/cpu/cpu_blas.h"
#include "device/cpu/cpu_kernels.h"
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

// The OpenMP team for a loop over `work` floats: the GEMM thread count, or 1 when small.
int team(int64_t work) { return work >= (int64_t{1} << 15) ? cpu::blas_threads() : 1; }

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

void layernorm_forward_kernel(const KernelArgs& args) {
  const char* kName = "layernorm_forward";
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
  float* y = f32_data(args.tensors[3], kName, "Y");
  float* mean = f32_data(args.tensors[4], kName, "mean");
  float* rstd = f32_data(args.tensors[5], kName, "rstd");
  const float eps = static_cast<float>(args.floats[0]);
#pragma omp parallel for schedule(static) num_threads(team(rows * c))
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict xi = x + i * c;
    float* __restrict yi = y + i * c;
    float sum = 0.0f;
    for (int64_t j = 0; j < c; ++j) sum += xi[j];
    const float m = sum / static_cast<float>(c);
    float var = 0.0f;
    for (int64_t j = 0; j < c; ++j) var += (xi[j] - m) * (xi[j] - m);
    const float r = 1.0f / std::sqrt(var / static_cast<float>(c) + eps);
    for (int64_t j = 0; j < c; ++j) yi[j] = (xi[j] - m) * r * w[j] + b[j];
    mean[i] = m;
    rstd[i] = r;
  }
}

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
#pragma omp parallel for schedule(static) num_threads(team(rows * c))
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict dyi = dy + i * c;
    const float* __restrict xi = x + i * c;
    float* __restrict dxi = dx + i * c;
    const float m = mean[i], r = rstd[i];
    float g_mean = 0.0f, gx_mean = 0.0f;  // mean_c(g), mean_c(g * xhat)
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

// e^x within about 2 ulp for x in [-87, 88] (clamped there): Cephes' expf, written
// without branches or calls so that `omp simd` loops vectorize it. libm's expf and tanhf
// are scalar calls, and GELU and softmax spend most of their time in them.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds x / ln 2
  const float n = t - 12582912.0f;                          // to the integer n, held in t
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // x - n ln 2, in 2 parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n from n's bits in t's mantissa; n in [-126, 127].
  const int32_t bits = (std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

// tanh(u) = 1 - 2 / (1 + e^(2u)): absolute error about 1e-7, which is what GELU needs.
inline float tanh_approx(float u) { return 1.0f - 2.0f / (1.0f + exp_approx(2.0f * u)); }

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

void gelu_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "gelu");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK_EQ(args.tensors[1].numel(), count) << "gelu X and Y";
  const float* x = f32_data(args.tensors[0], "gelu", "X");
  float* y = f32_data(args.tensors[1], "gelu", "Y");  // may alias x
#pragma omp parallel for simd schedule(static) num_threads(team(count))
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanh_approx(kGeluScale * (v + kGeluCubic * v * v * v)));
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
#pragma omp parallel for simd schedule(static) num_threads(team(count))
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i];
    const float th = tanh_approx(kGeluScale * (v + kGeluCubic * v * v * v));
    const float dth = (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * kGeluCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + th) + 0.5f * v * dth);
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
#pragma omp parallel for schedule(static) num_threads(team(count))
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

// Row i of the causal softmax in place: p[0..i] = softmax(p[0..i]), p[i+1..T) = 0.
void causal_softmax_row(float* __restrict p, int64_t i, int64_t steps) {
  float max = p[0];
  for (int64_t j = 1; j <= i; ++j) max = std::max(max, p[j]);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j <= i; ++j) {
    p[j] = exp_approx(p[j] - max);
    sum += p[j];
  }
  const float inverse = 1.0f / sum;
  for (int64_t j = 0; j <= i; ++j) p[j] *= inverse;
  std::fill(p + i + 1, p + steps, 0.0f);
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
#pragma omp parallel for schedule(static) num_threads(team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    const float* q = qkv + b * t * c3 + h * d.head_dim;  // (T, D), row stride 3C
    const float* k = q + c;
    const float* v = q + 2 * c;
    float* p = probs + bh * t * t;  // (T, T)
    // TODO(perf): skip the masked upper triangle (blocks of rows against their prefix).
    cpu::sgemm(false, true, t, t, d.head_dim, scale, q, c3, k, c3, 0.0f, p, t);
    for (int64_t i = 0; i < t; ++i) causal_softmax_row(p + i * t, i, t);
    cpu::sgemm(false, false, t, d.head_dim, t, 1.0f, p, t, v, c3, 0.0f,
               out + b * t * c + h * d.head_dim, c);
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
#pragma omp parallel for schedule(static) num_threads(team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    const int64_t head = b * t * c3 + h * d.head_dim;
    const float* q = qkv + head;
    const float* k = q + c;
    const float* v = q + 2 * c;
    float* dq = dqkv + head;
    float* dk = dq + c;
    float* dv = dq + 2 * c;
    const float* d_o = dout + b * t * c + h * d.head_dim;  // (T, D), row stride C
    const float* p = probs + bh * t * t;
    float* ds = scratch + bh * t * t;
    cpu::sgemm(true, false, t, d.head_dim, t, 1.0f, p, t, d_o, c, 0.0f, dv, c3);
    cpu::sgemm(false, true, t, t, d.head_dim, 1.0f, d_o, c, v, c3, 0.0f, ds, t);
    for (int64_t i = 0; i < t; ++i) {
      const float* __restrict pi = p + i * t;
      float* __restrict dsi = ds + i * t;
      float dot = 0.0f;
      for (int64_t j = 0; j <= i; ++j) dot += pi[j] * dsi[j];
      for (int64_t j = 0; j <= i; ++j) dsi[j] = pi[j] * (dsi[j] - dot) * scale;
      std::fill(dsi + i + 1, dsi + t, 0.0f);
    }
    cpu::sgemm(false, false, t, d.head_dim, t, 1.0f, ds, t, k, c3, 0.0f, dq, c3);
    cpu::sgemm(true, false, t, d.head_dim, t, 1.0f, ds, t, q, c3, 0.0f, dk, c3);
  }
}

}  // namespace

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
