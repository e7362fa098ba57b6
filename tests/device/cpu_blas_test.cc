// petaring::cpu::sgemm (the cpu backend's GEMM library wrapper) against a double-precision
// reference: every transpose combination, padded row strides, beta == 0 over NaN, k == 0,
// accumulation with alpha and beta, and thread counts set from another thread.
#include "device/cpu/cpu_blas.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "runtime/error.h"
#include "trainer/rng.h"

namespace petaring {
namespace {

struct Case {
  bool ta, tb;
  int64_t m, n, k;
  int64_t pad;  // extra elements at the end of every stored row
};

// Stored (rows, cols) with row stride cols + pad.
std::vector<float> random_matrix(Rng& rng, int64_t rows, int64_t cols, int64_t pad) {
  std::vector<float> out(static_cast<size_t>(rows * (cols + pad)), std::nanf(""));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) out[static_cast<size_t>(i * (cols + pad) + j)] = static_cast<float>(rng.uniform(-1, 1));
  }
  return out;
}

void check_case(const Case& c, float alpha, float beta) {
  Rng rng(static_cast<uint64_t>(c.m * 1000003 + c.n * 1009 + c.k + (c.ta ? 7 : 0) + (c.tb ? 13 : 0)));
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  auto a = random_matrix(rng, a_rows, a_cols, c.pad);
  auto b = random_matrix(rng, b_rows, b_cols, c.pad);
  auto out = random_matrix(rng, c.m, c.n, c.pad);
  if (beta == 0.0f) {
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) out[static_cast<size_t>(i * (c.n + c.pad) + j)] = std::nanf("");
    }
  }
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  auto at = [&](int64_t i, int64_t p) { return c.ta ? a[static_cast<size_t>(p * lda + i)] : a[static_cast<size_t>(i * lda + p)]; };
  auto bt = [&](int64_t p, int64_t j) { return c.tb ? b[static_cast<size_t>(j * ldb + p)] : b[static_cast<size_t>(p * ldb + j)]; };
  std::vector<double> expected(static_cast<size_t>(c.m * c.n));
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < c.k; ++p) sum += static_cast<double>(at(i, p)) * bt(p, j);
      double old = beta == 0.0f ? 0.0 : out[static_cast<size_t>(i * ldc + j)];
      expected[static_cast<size_t>(i * c.n + j)] = alpha * sum + beta * old;
    }
  }
  cpu::sgemm(c.ta, c.tb, c.m, c.n, c.k, alpha, a.data(), lda, b.data(), ldb, beta, out.data(), ldc);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double got = out[static_cast<size_t>(i * ldc + j)];
      double want = expected[static_cast<size_t>(i * c.n + j)];
      ASSERT_NEAR(got, want, 1e-5 * (1 + static_cast<double>(c.k)))
          << (c.ta ? "T" : "N") << (c.tb ? "T" : "N") << " " << c.m << "x" << c.n << "x" << c.k
          << " at (" << i << ", " << j << ")";
    }
    // Padding after each row of C is never written.
    for (int64_t j = c.n; j < ldc; ++j) ASSERT_TRUE(std::isnan(out[static_cast<size_t>(i * ldc + j)]));
  }
}

TEST(CpuBlasTest, MatchesDoubleReferenceForEveryLayout) {
  const Case cases[] = {{false, false, 7, 5, 3, 0},   {false, true, 64, 256, 784, 0},
                        {true, false, 256, 784, 64, 0}, {true, true, 9, 11, 13, 3},
                        {false, true, 1, 1, 1, 0},    {true, false, 33, 17, 65, 5},
                        {false, false, 64, 10, 256, 2}, {true, true, 2, 3, 1, 1}};
  for (const Case& c : cases) {
    check_case(c, 1.0f, 0.0f);
    check_case(c, 0.5f, 2.0f);
  }
}

TEST(CpuBlasTest, EmptyInnerDimensionScalesOrZeroesC) {
  std::vector<float> out = {1, 2, 3, 4};
  cpu::sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 3.0f, out.data(), 2);
  EXPECT_EQ(out, (std::vector<float>{3, 6, 9, 12}));
  std::vector<float> nan(4, std::nanf(""));
  cpu::sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, nan.data(), 2);
  EXPECT_EQ(nan, (std::vector<float>(4, 0.0f)));
}

TEST(CpuBlasTest, NegativeExtentsAreABug) {
  float x = 0;
  EXPECT_THROW(cpu::sgemm(false, false, -1, 1, 1, 1.0f, &x, 1, &x, 1, 0.0f, &x, 1), Error);
}

TEST(CpuBlasTest, ThreadCountAppliesToOtherThreads) {
  cpu::set_blas_threads(2);
  std::thread worker([] { check_case({false, true, 64, 256, 784, 0}, 1.0f, 0.0f); });
  worker.join();
  cpu::set_blas_threads(1);
  check_case({true, false, 256, 256, 64, 0}, 1.0f, 1.0f);
  EXPECT_FALSE(cpu::blas_library_name().empty());
}

}  // namespace
}  // namespace petaring
