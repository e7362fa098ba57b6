// sgemm on oneDNN's dnnl_sgemm (row-major; Debian's build threads it with OpenMP);
// gemm_bf16 on oneDNN's matmul primitive (bf16 sources, f32 accumulation), cached per
// shape and thread because creating a primitive costs far more than running a small one.
// oneDNN was the fastest of oneDNN, OpenBLAS and BLIS on the MLP training shapes at 1
// and 2 threads: see docs/benchmarks.md and `petaring bench gemm`.
#include "device/cpu/cpu_blas.h"

#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

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

// Everything that selects a matmul primitive.
struct MatmulKey {
  bool trans_a, trans_b, bf16_out, has_bias;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  bool operator==(const MatmulKey&) const = default;
};

struct MatmulKeyHash {
  size_t operator()(const MatmulKey& key) const {
    size_t h = 0;
    auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix((key.trans_a ? 1u : 0u) | (key.trans_b ? 2u : 0u) | (key.bf16_out ? 4u : 0u) |
        (key.has_bias ? 8u : 0u));
    for (int64_t v : {key.m, key.n, key.k, key.lda, key.ldb, key.ldc}) mix(static_cast<uint64_t>(v));
    uint32_t alpha, beta;
    std::memcpy(&alpha, &key.alpha, sizeof(alpha));
    std::memcpy(&beta, &key.beta, sizeof(beta));
    mix((static_cast<uint64_t>(alpha) << 32) | beta);
    return h;
  }
};

struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c, bias;
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

const Matmul& matmul_for(const MatmulKey& key) {
  thread_local std::unordered_map<MatmulKey, Matmul, MatmulKeyHash> cache;
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  using dt = dnnl::memory::data_type;
  using dims = dnnl::memory::dims;
  Matmul mm;
  // Row-major with leading dimensions; a transposed operand is the same memory read
  // with swapped strides.
  mm.a = dnnl::memory::desc(dims{key.m, key.k}, dt::bf16,
                            key.trans_a ? dims{1, key.lda} : dims{key.lda, 1});
  mm.b = dnnl::memory::desc(dims{key.k, key.n}, dt::bf16,
                            key.trans_b ? dims{1, key.ldb} : dims{key.ldb, 1});
  mm.c = dnnl::memory::desc(dims{key.m, key.n}, key.bf16_out ? dt::bf16 : dt::f32,
                            dims{key.ldc, 1});
  dnnl::primitive_attr attr;
  if (key.alpha != 1.0f) attr.set_output_scales(0, {key.alpha});
  if (key.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(key.beta);
    attr.set_post_ops(ops);
  }
  std::unique_ptr<dnnl::matmul::desc> desc;
  if (key.has_bias) {
    mm.bias = dnnl::memory::desc(dims{1, key.n}, dt::f32, dims{key.n, 1});
    desc = std::make_unique<dnnl::matmul::desc>(mm.a, mm.b, mm.bias, mm.c);
  } else {
    desc = std::make_unique<dnnl::matmul::desc>(mm.a, mm.b, mm.c);
  }
  mm.primitive = dnnl::matmul(dnnl::matmul::primitive_desc(*desc, attr, cpu_engine()));
  return cache.emplace(key, std::move(mm)).first->second;
}

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const BF16* a, int64_t lda, const BF16* b, int64_t ldb, float beta, void* c,
               DType c_type, int64_t ldc, const float* bias) {
  PR_CHECK(m >= 0 && n >= 0 && k >= 0) << "gemm_bf16 extents " << m << "x" << n << "x" << k;
  PR_CHECK(c_type == DType::kF32 || c_type == DType::kBF16) << "gemm_bf16 C " << dtype_name(c_type);
  const bool bf16_out = c_type == DType::kBF16;
  PR_CHECK(!bf16_out || beta == 0.0f) << "gemm_bf16 into bf16 needs beta 0, got " << beta;
  PR_CHECK(bias == nullptr || alpha == 1.0f) << "gemm_bf16 with a bias needs alpha 1";
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta * C (+ bias)
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const float add = bias != nullptr ? bias[j] : 0.0f;
        if (bf16_out) {
          static_cast<BF16*>(c)[i * ldc + j] = bf16_from_f32(add);
        } else {
          float& out = static_cast<float*>(c)[i * ldc + j];
          out = (beta == 0.0f ? 0.0f : beta * out) + add;
        }
      }
    }
    return;
  }
  apply_blas_threads();
  const Matmul& mm =
      matmul_for(MatmulKey{trans_a, trans_b, bf16_out, bias != nullptr, m, n, k, lda, ldb, ldc,
                           alpha, beta});
  dnnl::engine& engine = cpu_engine();
  thread_local dnnl::stream stream(engine);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(mm.a, engine, const_cast<BF16*>(a))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(mm.b, engine, const_cast<BF16*>(b))},
      {DNNL_ARG_DST, dnnl::memory(mm.c, engine, c)},
  };
  if (bias != nullptr) {
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(mm.bias, engine, const_cast<float*>(bias)));
  }
  mm.primitive.execute(stream, args);
  stream.wait();
}

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
