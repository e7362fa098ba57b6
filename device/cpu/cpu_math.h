// Element-wise math shared by the cpu backend's transformer kernels (f32 and bf16), and
// the attention of one (batch, head) pair over f32 row-strided views.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

#include "runtime/dtype.h"

namespace petaring::cpu {

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

inline float gelu_value(float v) {
  return 0.5f * v * (1.0f + tanh_approx(kGeluScale * (v + kGeluCubic * v * v * v)));
}
// d gelu(v) / dv.
inline float gelu_slope(float v) {
  const float th = tanh_approx(kGeluScale * (v + kGeluCubic * v * v * v));
  const float dth = (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * kGeluCubic * v * v);
  return 0.5f * (1.0f + th) + 0.5f * v * dth;
}

// runtime/dtype.h's rounding (nearest, ties to even; NaN stays NaN) without a branch, so
// that conversion loops vectorize.
inline uint16_t bf16_bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const uint32_t nan = (bits >> 16) | 0x0040u;
  return static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
inline float bf16_value(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
// Row-strided conversions of a (rows, cols) block.
void to_bf16(const float* x, int64_t ld_x, BF16* y, int64_t ld_y, int64_t rows, int64_t cols);
void to_f32(const BF16* x, int64_t ld_x, float* y, int64_t ld_y, int64_t rows, int64_t cols);

// Causal attention of one (batch, head) pair on the calling thread. q, k, v: (T, D) with
// row stride ld_qkv; p: (T, T) probabilities, rows of stride T, 0 above the diagonal;
// out: (T, D) with row stride ld_out. Only the causal (lower) triangle is computed, in
// blocks of rows against their prefix.
void attention_head_forward(const float* q, const float* k, const float* v, int64_t ld_qkv,
                            float* p, float* out, int64_t ld_out, int64_t t, int64_t d,
                            float scale);
// Its backward: dq, dk, dv (T, D) with row stride ld_dqkv, overwritten; d_o: (T, D) with
// row stride ld_do; ds: (T, T) scratch.
void attention_head_backward(const float* d_o, int64_t ld_do, const float* q, const float* k,
                             const float* v, int64_t ld_qkv, const float* p, float* dq,
                             float* dk, float* dv, int64_t ld_dqkv, float* ds, int64_t t,
                             int64_t d, float scale);

}  // namespace petaring::cpu
