// sgemm on oneDNN's dnnl_sgemm (row-major; Debian's build threads it with OpenMP).
// oneDNN was the fastest of oneDNN, OpenBLAS and BLIS on the MLP training shapes at 1
// and 2 threads: see docs/benchmarks.md and `petaring bench gemm`.
#include "device/cpu/cpu_blas.h"

#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <atomic>

#include "runtime/check.h"

namespace petaring::cpu {
namespace {

// Set by set_blas_threads(); 0 = OpenMP's default (OMP_NUM_THREADS, else one per CPU).
std::atomic<int> g_blas_threads{0};

// oneDNN sizes its OpenMP team from omp_get_max_threads(), which is a setting of the
// calling thread: each thread that runs a GEMM applies the process-wide count itself,
// once per change.
void apply_blas_threads() {
  thread_local int applied = 0;
  int wanted = g_blas_threads.load(std::memory_order_relaxed);
  if (wanted != 0 && wanted != applied) {
    omp_set_num_threads(wanted);
    applied = wanted;
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  PR_CHECK(m >= 0 && n >= 0 && k >= 0) << "gemm extents " << m << "x" << n << "x" << k;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta * C; oneDNN would reject lda == 0, and beta == 0 must zero C
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return;
  }
  apply_blas_threads();
  dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                    lda, b, ldb, beta, c, ldc);
  PR_CHECK_EQ(static_cast<int>(status), static_cast<int>(dnnl_success))
      << "dnnl_sgemm " << (trans_a ? "T" : "N") << (trans_b ? "T" : "N") << " " << m << "x" << n
      << "x" << k << " lda " << lda << " ldb " << ldb << " ldc " << ldc;
}

void set_blas_threads(int threads) {
  g_blas_threads.store(std::max(threads, 1), std::memory_order_relaxed);
  apply_blas_threads();
}

int blas_threads() {
  const int threads = g_blas_threads.load(std::memory_order_relaxed);
  return threads != 0 ? threads : omp_get_max_threads();
}

std::string_view blas_library_name() { return "oneDNN"; }

}  // namespace petaring::cpu
