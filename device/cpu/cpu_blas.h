// The CPU GEMM used by the cpu backend. Which library implements it (oneDNN, OpenBLAS
// or BLIS) was chosen by measurement on the target CPU: see docs/benchmarks.md and
// `petaring bench gemm`.
#pragma once

#include <cstdint>
#include <string_view>

namespace petaring::cpu {

// Row-major C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C. lda/ldb/ldc are the row
// strides of A, B and C as stored. beta == 0 ignores C's old contents.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Threads the GEMM library may use in this process (>= 1).
void set_blas_threads(int threads);
// The count set by set_blas_threads(), or omp_get_max_threads() before any call: the team
// size for the cpu kernels' own OpenMP loops, whichever thread runs them.
int blas_threads();
std::string_view blas_library_name();

}  // namespace petaring::cpu
