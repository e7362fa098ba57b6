// The CPU GEMM used by the cpu backend. Which library implements it (oneDNN, OpenBLAS
// or BLIS) was chosen by measurement on the target CPU: see docs/benchmarks.md and
// `petaring bench gemm`.
#pragma once

#include <cstdint>
#include <string_view>

#include "runtime/dtype.h"

namespace petaring::cpu {

// Row-major C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C. lda/ldb/ldc are the row
// strides of A, B and C as stored. beta == 0 ignores C's old contents.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Row-major C(M,N) = alpha * op(A) @ op(B) (+ bias[j]) + beta * C with bf16 A and B and
// the products accumulated in f32 (oneDNN's matmul primitive, on AVX-512 BF16 where the
// CPU has it). C is f32, or bf16 (rounded once from the f32 result; then beta must be 0).
// bias: f32 (N) or null (then alpha must be 1). Primitives are cached per shape on the
// calling thread.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const BF16* a, int64_t lda, const BF16* b, int64_t ldb, float beta, void* c,
               DType c_type, int64_t ldc, const float* bias = nullptr);

// Threads the GEMM library may use in this process (>= 1).
void set_blas_threads(int threads);
// The count set by set_blas_threads(), or omp_get_max_threads() before any call: the team
// size for the cpu kernels' own OpenMP loops, whichever thread runs them.
int blas_threads();
std::string_view blas_library_name();

}  // namespace petaring::cpu
