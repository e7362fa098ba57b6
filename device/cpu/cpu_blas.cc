// sgemm on OpenBLAS's CBLAS interface (row-major).
#include "device/cpu/cpu_blas.h"

#include <cblas.h>

#include "runtime/check.h"

namespace petaring::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  PR_CHECK(m >= 0 && n >= 0 && k >= 0) << "gemm extents " << m << "x" << n << "x" << k;
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }

std::string_view blas_library_name() { return "OpenBLAS"; }

}  // namespace petaring::cpu
