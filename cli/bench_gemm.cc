// `petaring bench gemm` (method and columns: cli/bench_gemm.h).
//
// oneDNN is linked (its API has no symbols in common with the others). OpenBLAS and
// BLIS both export the CBLAS and Fortran BLAS names, so each is loaded with
// dlopen(RTLD_LOCAL) from the path CMake found and called through dlsym'd pointers;
// neither can interpose on the other or on device/cpu/cpu_blas.cc's library.
#include "cli/bench_gemm.h"

#include <dlfcn.h>
#include <omp.h>

#include <dnnl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/bench.h"
#include "device/cpu/cpu_blas.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::cli {
namespace {

// Normwise relative error that still passes fp32 accumulation over k <= 4096 and fails a
// wrong transpose, stride or stale C by orders of magnitude.
constexpr double kTolerance = 1e-4;

// Operands stored as the shape says; C is (m, n) with ldc = n.
struct Operands {
  const float* a;
  const float* b;
};

struct GemmLib {
  std::string name;
  std::string about;  // version and kernel, for the table's header
  std::function<void(int threads)> set_threads;
  // C = op(A) @ op(B) (alpha 1, beta 0): C's old contents must be ignored.
  std::function<void(const GemmShape&, Operands, float* c)> sgemm;
};

int64_t lda_of(const GemmShape& s) { return s.trans_a ? s.m : s.k; }
int64_t ldb_of(const GemmShape& s) { return s.trans_b ? s.k : s.n; }

// ---- libraries ----------------------------------------------------------------------

void* open_library(const std::string& lib, const char* path) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);  // kept open until exit
  if (handle == nullptr) {
    PR_FAIL(kNotFound, "bench gemm: cannot load ", lib, " from ", path, " (", dlerror(),
            "); install its Debian package or leave it out of --libs");
  }
  return handle;
}

template <typename Fn>
Fn find_symbol(void* handle, const std::string& lib, const char* name) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) {
    PR_FAIL(kNotFound, "bench gemm: ", lib, " has no symbol ", name, "; is it a CBLAS build?");
  }
  return reinterpret_cast<Fn>(symbol);
}

// CBLAS's row-major entry point; the enums are C ints (CblasRowMajor = 101, ...).
template <typename Int>
using CblasSgemm = void (*)(int, int, int, Int, Int, Int, float, const float*, Int,
                            const float*, Int, float, float*, Int);

template <typename Int>
std::function<void(const GemmShape&, Operands, float*)> cblas_caller(CblasSgemm<Int> fn) {
  return [fn](const GemmShape& s, Operands x, float* c) {
    constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
    fn(kRowMajor, s.trans_a ? kTrans : kNoTrans, s.trans_b ? kTrans : kNoTrans,
       static_cast<Int>(s.m), static_cast<Int>(s.n), static_cast<Int>(s.k), 1.0f, x.a,
       static_cast<Int>(lda_of(s)), x.b, static_cast<Int>(ldb_of(s)), 0.0f, c,
       static_cast<Int>(s.n));
  };
}

GemmLib make_openblas() {
  void* h = open_library("openblas", PETARING_OPENBLAS_PATH);
  auto config = find_symbol<char* (*)()>(h, "openblas", "openblas_get_config");
  auto core = find_symbol<char* (*)()>(h, "openblas", "openblas_get_corename");
  auto set = find_symbol<void (*)(int)>(h, "openblas", "openblas_set_num_threads");
  std::string about = str_cat(config(), " core=", core());
  if (about.find("USE64BITINT") != std::string::npos) {
    PR_FAIL(kUnimplemented, "bench gemm: ", PETARING_OPENBLAS_PATH,
            " uses 64-bit integers; use the 32-bit libopenblas0-pthread build");
  }
  auto sgemm = find_symbol<CblasSgemm<int>>(h, "openblas", "cblas_sgemm");
  return {"openblas", about, [set](int t) { set(t); }, cblas_caller<int>(sgemm)};
}

GemmLib make_blis() {
  void* h = open_library("blis", PETARING_BLIS_PATH);
  auto version = find_symbol<const char* (*)()>(h, "blis", "bli_info_get_version_str");
  auto int_bits = find_symbol<int64_t (*)()>(h, "blis", "bli_info_get_blas_int_type_size");
  auto set = find_symbol<void (*)(int64_t)>(h, "blis", "bli_thread_set_num_threads");
  int64_t bits = int_bits();
  GemmLib lib{"blis", str_cat("BLIS ", version(), " (OpenMP, ", bits, "-bit BLAS ints)"),
              [set](int t) { set(t); }, nullptr};
  if (bits == 64) {
    lib.sgemm = cblas_caller<int64_t>(find_symbol<CblasSgemm<int64_t>>(h, "blis", "cblas_sgemm"));
  } else {
    lib.sgemm = cblas_caller<int>(find_symbol<CblasSgemm<int>>(h, "blis", "cblas_sgemm"));
  }
  return lib;
}

GemmLib make_dnnl() {
  const dnnl_version_t* v = dnnl_version();
  std::string about = str_cat("oneDNN ", v->major, ".", v->minor, ".", v->patch,
                              " (cpu runtime ", v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other",
                              ", dnnl_sgemm)");
  auto sgemm = [](const GemmShape& s, Operands x, float* c) {
    dnnl_status_t status = dnnl_sgemm(s.trans_a ? 'T' : 'N', s.trans_b ? 'T' : 'N', s.m, s.n,
                                      s.k, 1.0f, x.a, lda_of(s), x.b, ldb_of(s), 0.0f, c, s.n);
    PR_CHECK_EQ(static_cast<int>(status), static_cast<int>(dnnl_success)) << "dnnl_sgemm " << s.name;
  };
  // oneDNN's OpenMP build sizes its teams from the calling thread's omp_get_max_threads().
  return {"dnnl", about, [](int t) { omp_set_num_threads(t); }, sgemm};
}

GemmLib make_petaring() {
  auto sgemm = [](const GemmShape& s, Operands x, float* c) {
    cpu::sgemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, x.a, lda_of(s), x.b, ldb_of(s), 0.0f,
               c, s.n);
  };
  return {"petaring", str_cat("device/cpu/cpu_blas.h on ", cpu::blas_library_name()),
          [](int t) { cpu::set_blas_threads(t); }, sgemm};
}

GemmLib make_lib(const std::string& name) {
  if (name == "dnnl") return make_dnnl();
  if (name == "openblas") return make_openblas();
  if (name == "blis") return make_blis();
  if (name == "petaring") return make_petaring();
  PR_FAIL(kInvalidArgument, "bench gemm: unknown library '", name,
          "' in --libs; use dnnl, openblas, blis or petaring");
}

// ---- data, timing and checks --------------------------------------------------------

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatBuffer = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned; filled with uniform [-1, 1) from `seed`, or NaN when seed is 0.
FloatBuffer make_buffer(int64_t count, uint32_t seed) {
  size_t bytes = (static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float) + 63) / 64 * 64;
  FloatBuffer buffer(static_cast<float*>(std::aligned_alloc(64, bytes)));
  PR_CHECK(buffer != nullptr) << "allocating " << bytes << " bytes";
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int64_t i = 0; i < count; ++i) buffer[i] = seed == 0 ? std::nanf("") : uniform(rng);
  return buffer;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Per-call times of one (shape, threads, lib), collected over the rounds.
struct Samples {
  int64_t calls_per_batch = 0;  // fixed by the first warm-up
  std::vector<double> per_call_us;
};

// Untimed calls for warmup_ms (at least two); the first time, also sizes the batches.
void warm_up(const std::function<void()>& call, const GemmBenchOptions& o, Samples& samples) {
  auto start = std::chrono::steady_clock::now();
  for (int calls = 0; calls < 2 || ms_since(start) < o.warmup_ms; ++calls) call();
  if (samples.calls_per_batch > 0) return;
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) call();
  double estimate_ms = ms_since(start) / 3;
  samples.calls_per_batch = std::max<int64_t>(1, std::llround(std::ceil(o.batch_ms / estimate_ms)));
}

void time_batches(const std::function<void()>& call, int batches, Samples& samples) {
  for (int r = 0; r < batches; ++r) {
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < samples.calls_per_batch; ++i) call();
    double us = ms_since(start) * 1e3 / static_cast<double>(samples.calls_per_batch);
    samples.per_call_us.push_back(us);
  }
}

// Fills the timing fields of `row` from the samples (quartiles interpolate linearly).
void summarize(Samples samples, GemmBenchRow& row) {
  std::vector<double>& us = samples.per_call_us;
  std::sort(us.begin(), us.end());
  auto quantile = [&](double q) {
    double pos = q * static_cast<double>(us.size() - 1);
    size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, us.size() - 1);
    return us[lo] + (pos - static_cast<double>(lo)) * (us[hi] - us[lo]);
  };
  row.calls_per_batch = samples.calls_per_batch;
  row.median_us = quantile(0.5);
  row.p25_us = quantile(0.25);
  row.p75_us = quantile(0.75);
  row.gflops = 2.0 * static_cast<double>(row.shape.m * row.shape.n * row.shape.k) / (row.median_us * 1e3);
}

// max |c - ref| / max |ref| over up to 4096 entries (all of a small C), ref in double.
double reference_error(const GemmShape& s, Operands x, const float* c) {
  auto a_at = [&](int64_t i, int64_t p) { return s.trans_a ? x.a[p * s.m + i] : x.a[i * s.k + p]; };
  auto b_at = [&](int64_t p, int64_t j) { return s.trans_b ? x.b[j * s.k + p] : x.b[p * s.n + j]; };
  const int64_t entries = s.m * s.n;
  const int64_t samples = std::min<int64_t>(entries, 4096);
  std::mt19937_64 rng(12345);
  double max_diff = 0, max_ref = 0;
  for (int64_t t = 0; t < samples; ++t) {
    int64_t e = samples == entries ? t : static_cast<int64_t>(rng() % static_cast<uint64_t>(entries));
    int64_t i = e / s.n, j = e % s.n;
    double ref = 0;
    for (int64_t p = 0; p < s.k; ++p) ref += static_cast<double>(a_at(i, p)) * b_at(p, j);
    double diff = std::abs(c[e] - ref);
    if (std::isnan(c[e])) return INFINITY;
    max_diff = std::max(max_diff, diff);
    max_ref = std::max(max_ref, std::abs(ref));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

// max |x - y| / max |y| over every entry; NaN anywhere gives infinity.
double relative_difference(const float* x, const float* y, int64_t count) {
  double max_diff = 0, max_y = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return INFINITY;
    max_diff = std::max(max_diff, static_cast<double>(std::abs(x[i] - y[i])));
    max_y = std::max(max_y, static_cast<double>(std::abs(y[i])));
  }
  return max_y > 0 ? max_diff / max_y : max_diff;
}

void validate(const GemmBenchOptions& o) {
  if (o.threads.empty() || o.libs.empty() || o.shapes.empty()) {
    PR_FAIL(kInvalidArgument, "bench gemm: --threads, --libs and --shapes need at least one value");
  }
  for (int t : o.threads) {
    if (t < 1) PR_FAIL(kInvalidArgument, "bench gemm: --threads ", t, " is not a positive count");
  }
  if (o.repeats < 1 || o.rounds < 1) {
    PR_FAIL(kInvalidArgument, "bench gemm: --repeats and --rounds must be >= 1, not ", o.repeats,
            " and ", o.rounds);
  }
  if (o.batch_ms <= 0 || o.warmup_ms < 0) {
    PR_FAIL(kInvalidArgument, "bench gemm: --batch-ms must be > 0 and --warmup-ms >= 0");
  }
}

// Times every library on one shape at one thread count, in rounds that rotate the
// libraries' order (so that a burst of load on the machine hits all of them), and checks
// their results against a reference and against each other.
void run_shape(const GemmShape& s, int threads, std::vector<GemmLib>& libs,
               const GemmBenchOptions& o, std::vector<GemmBenchRow>& rows) {
  FloatBuffer a = make_buffer(s.m * s.k, 1), b = make_buffer(s.k * s.n, 2);
  Operands x{a.get(), b.get()};
  std::vector<FloatBuffer> results;  // (m, n) per library; NaN: beta 0 must overwrite it
  for (size_t i = 0; i < libs.size(); ++i) results.push_back(make_buffer(s.m * s.n, 0));
  std::vector<Samples> samples(libs.size());
  const int batches_per_round = (o.repeats + o.rounds - 1) / o.rounds;
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t turn = 0; turn < libs.size(); ++turn) {
      size_t i = (turn + static_cast<size_t>(round)) % libs.size();
      float* c = results[i].get();
      auto call = [&] { libs[i].sgemm(s, x, c); };
      libs[i].set_threads(threads);
      warm_up(call, o, samples[i]);
      time_batches(call, batches_per_round, samples[i]);
    }
  }
  const size_t first = rows.size();
  double best = INFINITY;
  for (size_t i = 0; i < libs.size(); ++i) {
    GemmBenchRow row{.shape = s, .lib = libs[i].name, .threads = threads};
    summarize(samples[i], row);
    row.err_ref = reference_error(s, x, results[i].get());
    row.ok = row.err_ref <= kTolerance;
    for (size_t j = 0; j < libs.size(); ++j) {
      if (j == i) continue;
      double diff = relative_difference(results[i].get(), results[j].get(), s.m * s.n);
      row.err_libs = std::max(row.err_libs, diff);
    }
    if (row.ok) best = std::min(best, row.median_us);
    PR_LOG(kDebug) << "bench gemm: " << s.name << " " << row.lib << " x" << threads << ": "
                   << row.median_us << " us, err " << row.err_ref;
    rows.push_back(row);
  }
  for (size_t i = first; i < rows.size(); ++i) rows[i].vs_best = rows[i].median_us / best;
}

}  // namespace

std::string GemmShape::group() const { return name.substr(0, name.find('.')); }
std::string GemmShape::op() const { return str_cat(trans_a ? "T" : "N", trans_b ? "T" : "N"); }

std::vector<GemmShape> all_gemm_shapes() {
  // MLP 784-256-256-10, batch 64; W is stored (out, in). Forward y = x W^T (NT);
  // weight gradient dW = dY^T X (TN); input gradient dX = dY W (NN).
  std::vector<GemmShape> shapes = {
      {"mlp.fc1.fwd", 64, 256, 784, false, true},  {"mlp.fc2.fwd", 64, 256, 256, false, true},
      {"mlp.fc3.fwd", 64, 10, 256, false, true},   {"mlp.fc3.dW", 10, 256, 64, true, false},
      {"mlp.fc3.dX", 64, 256, 10, false, false},   {"mlp.fc2.dW", 256, 256, 64, true, false},
      {"mlp.fc2.dX", 64, 256, 256, false, false},  {"mlp.fc1.dW", 256, 784, 64, true, false},
      {"mlp.fc1.dX", 64, 784, 256, false, false},
  };
  // A small transformer: 1024 tokens (batch 4 x T 256), model dim d; projections are
  // x W^T (NT); the MLP-up weight gradient is TN. Attention per head, T 256, head dim 64:
  // scores Q K^T (NT) and context P V (NN).
  for (int64_t d : {384, 768}) {
    std::string p = str_cat("gpt.d", d, ".");
    shapes.push_back({p + "qkv", 1024, 3 * d, d, false, true});
    shapes.push_back({p + "proj", 1024, d, d, false, true});
    shapes.push_back({p + "up", 1024, 4 * d, d, false, true});
    shapes.push_back({p + "down", 1024, d, 4 * d, false, true});
    shapes.push_back({p + "up.dW", 4 * d, d, 1024, true, false});
  }
  shapes.push_back({"gpt.att.scores", 256, 256, 64, false, true});
  shapes.push_back({"gpt.att.context", 256, 64, 256, false, false});
  return shapes;
}

std::vector<GemmShape> select_gemm_shapes(const std::vector<std::string>& selection) {
  std::vector<GemmShape> all = all_gemm_shapes(), picked;
  std::vector<bool> taken(all.size(), false);
  for (const std::string& want : selection) {
    bool matched = false;
    for (size_t i = 0; i < all.size(); ++i) {
      if (all[i].group() != want && all[i].name != want) continue;
      matched = true;
      taken[i] = true;
    }
    if (!matched) {
      std::string names;
      for (const GemmShape& s : all) names += " " + s.name;
      PR_FAIL(kInvalidArgument, "bench gemm: --shapes '", want,
              "' matches nothing; use mlp, gpt or one of:", names);
    }
  }
  for (size_t i = 0; i < all.size(); ++i) {
    if (taken[i]) picked.push_back(all[i]);
  }
  return picked;
}

std::vector<GemmBenchRow> run_gemm_bench(const GemmBenchOptions& options) {
  validate(options);
  std::vector<GemmShape> shapes = select_gemm_shapes(options.shapes);
  std::vector<GemmLib> libs;
  for (const std::string& name : options.libs) {
    libs.push_back(make_lib(name));
    PR_LOG(kInfo) << "bench gemm: " << name << " = " << libs.back().about;
  }
  std::vector<GemmBenchRow> rows;
  for (const GemmShape& shape : shapes) {
    for (int threads : options.threads) run_shape(shape, threads, libs, options, rows);
  }
  return rows;
}

void register_bench_gemm(CLI::App& bench, CommandTable& table) {
  auto options = std::make_shared<GemmBenchOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* gemm = bench.add_subcommand(
      "gemm", "time sgemm in each CPU BLAS library on the MLP and transformer shapes");
  gemm->add_option("--threads", options->threads, "thread counts, e.g. 1,2")->delimiter(',');
  gemm->add_option("--libs", options->libs, "dnnl, openblas, blis, petaring (cpu_blas.h)")
      ->delimiter(',');
  gemm->add_option("--shapes", options->shapes, "groups (mlp, gpt) or shape names")->delimiter(',');
  gemm->add_option("--repeats", options->repeats, "timed batches per row (median reported)");
  gemm->add_option("--rounds", options->rounds, "rounds the batches are split into");
  gemm->add_option("--batch-ms", options->batch_ms, "length of one timed batch, ms");
  gemm->add_option("--warmup-ms", options->warmup_ms, "untimed calls before each row, ms");
  gemm->add_flag("--json", *json, "one JSON object per line instead of a table");
  table.entries.emplace_back(gemm, [options, json] {
    std::vector<GemmBenchRow> rows = run_gemm_bench(*options);
    if (*json) {
      print_gemm_json(rows, std::cout);
    } else {
      print_gemm_table(rows, std::cout);
    }
    bool all_ok = std::all_of(rows.begin(), rows.end(), [](const GemmBenchRow& r) { return r.ok; });
    if (!all_ok) std::cerr << "petaring: bench gemm: some results were wrong (err_ref > 1e-4)\n";
    return all_ok ? 0 : 1;
  });
}

}  // namespace petaring::cli

namespace petaring::cli {

std::vector<GemmBenchTotal> gemm_bench_totals(const std::vector<GemmBenchRow>& rows) {
  std::vector<GemmBenchTotal> totals;
  for (const GemmBenchRow& row : rows) {
    auto same = [&](const GemmBenchTotal& t) {
      return t.group == row.shape.group() && t.lib == row.lib && t.threads == row.threads;
    };
    auto it = std::find_if(totals.begin(), totals.end(), same);
    if (it == totals.end()) {
      totals.push_back({.group = row.shape.group(), .lib = row.lib, .threads = row.threads, .ok = true});
      it = totals.end() - 1;
    }
    it->shapes += 1;
    it->total_us += row.median_us;
    it->ok = it->ok && row.ok;
  }
  for (GemmBenchTotal& t : totals) {
    double best = INFINITY;
    for (const GemmBenchTotal& other : totals) {
      if (other.group == t.group && other.threads == t.threads && other.ok) {
        best = std::min(best, other.total_us);
      }
    }
    t.vs_best = t.total_us / best;
  }
  return totals;
}

namespace {

std::string first_line(const char* path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown cpu";
}

template <typename... Args>
std::string format(const char* pattern, Args... args) {
  char line[256];
  std::snprintf(line, sizeof line, pattern, args...);
  return line;
}

}  // namespace

void print_gemm_table(const std::vector<GemmBenchRow>& rows, std::ostream& out) {
  out << "# petaring bench gemm: per-call median over timed batches; " << cpu_model() << ", "
      << std::thread::hardware_concurrency() << " cpus\n"
      << "# OMP_WAIT_POLICY=" << (std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "(unset)")
      << "; /proc/loadavg when done: " << first_line("/proc/loadavg") << "\n"
      << "# vs_best: median / fastest correct library (same shape and threads); "
      << "err: max|c - ref| / max|ref|\n";
  out << format("%-16s %5s %5s %5s %2s %-8s %3s %10s %5s %8s %7s %8s %8s %3s\n", "# shape", "M",
                "N", "K", "op", "lib", "thr", "median_us", "iqr%", "GFLOP/s", "vs_best", "err_ref",
                "err_libs", "ok");
  for (const GemmBenchRow& r : rows) {
    double iqr = 100.0 * (r.p75_us - r.p25_us) / r.median_us;
    out << format("%-16s %5lld %5lld %5lld %2s %-8s %3d %10.1f %5.1f %8.1f %7.2f %8.1e %8.1e %3s\n",
                  r.shape.name.c_str(), static_cast<long long>(r.shape.m),
                  static_cast<long long>(r.shape.n), static_cast<long long>(r.shape.k),
                  r.shape.op().c_str(), r.lib.c_str(), r.threads, r.median_us, iqr, r.gflops,
                  r.vs_best, r.err_ref, r.err_libs, r.ok ? "yes" : "NO");
  }
  out << "#\n# totals: sum of the medians over each group's shapes (one model step's GEMMs)\n";
  out << format("%-8s %-8s %3s %6s %10s %7s %3s\n", "# group", "lib", "thr", "shapes", "total_us",
                "vs_best", "ok");
  for (const GemmBenchTotal& t : gemm_bench_totals(rows)) {
    out << format("%-8s %-8s %3d %6d %10.1f %7.2f %3s\n", t.group.c_str(), t.lib.c_str(), t.threads,
                  t.shapes, t.total_us, t.vs_best, t.ok ? "yes" : "NO");
  }
}

void print_gemm_json(const std::vector<GemmBenchRow>& rows, std::ostream& out) {
  for (const GemmBenchRow& r : rows) {
    nlohmann::json line = {
        {"kind", "gemm"},       {"shape", r.shape.name},   {"m", r.shape.m},
        {"n", r.shape.n},       {"k", r.shape.k},          {"op", r.shape.op()},
        {"lib", r.lib},         {"threads", r.threads},    {"calls_per_batch", r.calls_per_batch},
        {"median_us", r.median_us}, {"p25_us", r.p25_us},  {"p75_us", r.p75_us},
        {"gflops", r.gflops},   {"vs_best", r.vs_best},    {"err_ref", r.err_ref},
        {"err_libs", r.err_libs}, {"ok", r.ok}};
    out << line.dump() << "\n";
  }
  for (const GemmBenchTotal& t : gemm_bench_totals(rows)) {
    nlohmann::json line = {{"kind", "total"},       {"group", t.group},   {"lib", t.lib},
                           {"threads", t.threads},  {"shapes", t.shapes}, {"total_us", t.total_us},
                           {"vs_best", t.vs_best},  {"ok", t.ok}};
    out << line.dump() << "\n";
  }
}

}  // namespace petaring::cli
