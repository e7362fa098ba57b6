// The CPU GEMM benchmark behind `petaring bench gemm`: times single-precision GEMM in
// each CPU BLAS library (oneDNN, OpenBLAS, BLIS; "petaring" = device/cpu/cpu_blas.h,
// whichever library it links) on the shapes petaring's models run, at each thread
// count, and checks every result against a double-precision reference and against the
// other libraries, so that a wrong call cannot win.
//
// Method, per (shape, threads): `rounds` rounds; in each, every library in turn (the
// order rotates by one each round) makes untimed warm-up calls for warmup_ms, then
// repeats/rounds timed batches, each calling the GEMM back to back for about batch_ms.
// The per-call time of each batch is one sample; a row reports the median (and the
// quartiles) of its library's samples. GFLOP/s = 2*m*n*k / median.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace petaring::cli {

// One row-major GEMM C(m, n) = op(A)(m, k) @ op(B)(k, n), as a model runs it.
struct GemmShape {
  std::string name;      // "<group>.<layer>.<pass>", e.g. "mlp.fc1.fwd"
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false;  // A is stored (k, m)
  bool trans_b = false;  // B is stored (n, k)
  std::string group() const;  // the name up to the first '.': "mlp", "gpt"
  std::string op() const;     // "NN", "NT", "TN" or "TT"
};

struct GemmBenchOptions {
  std::vector<int> threads = {1, 2};
  std::vector<std::string> libs = {"dnnl", "openblas", "blis"};
  std::vector<std::string> shapes = {"mlp", "gpt"};  // groups or exact shape names
  int repeats = 15;         // timed batches per row (rounded up to a multiple of rounds)
  int rounds = 3;           // the libraries take turns this many times
  double batch_ms = 10;     // each batch repeats the call for at least this long
  double warmup_ms = 200;   // untimed calls first; also lets the previous library's
                            // spinning worker threads go to sleep
};

struct GemmBenchRow {
  GemmShape shape;
  std::string lib;
  int threads = 0;
  int64_t calls_per_batch = 0;
  double median_us = 0, p25_us = 0, p75_us = 0;  // per call, over the timed batches
  double gflops = 0;    // 2*m*n*k / median
  double vs_best = 0;   // median / the fastest correct library's median (same shape,
                        // same threads); 1 = fastest
  double err_ref = 0;   // max |c - ref| / max |ref| over sampled entries; ref in double
  double err_libs = 0;  // max over the other libraries of max |c - c'| / max |c'|
  bool ok = false;      // err_ref within tolerance (NaN fails)
};

// Sum over a group's shapes of one library's medians (a model step's GEMM time).
struct GemmBenchTotal {
  std::string group;
  std::string lib;
  int threads = 0;
  int shapes = 0;
  double total_us = 0;
  double vs_best = 0;  // total / the smallest total of the same group and threads
  bool ok = false;     // every shape of the group passed the check
};

// Every shape the benchmark knows, in table order.
std::vector<GemmShape> all_gemm_shapes();
// The shapes named by group ("mlp", "gpt") or exact name, in table order, without
// duplicates; throws Error(kInvalidArgument) for a name that matches nothing.
std::vector<GemmShape> select_gemm_shapes(const std::vector<std::string>& selection);

// Validates the options (kInvalidArgument), loads the libraries (kNotFound when one
// cannot be loaded) and runs every row; blocks until done (about two minutes with the
// defaults on 2 cores). Progress goes to the log at debug level.
std::vector<GemmBenchRow> run_gemm_bench(const GemmBenchOptions& options);
std::vector<GemmBenchTotal> gemm_bench_totals(const std::vector<GemmBenchRow>& rows);

// An aligned table of the rows, then the per-group totals.
void print_gemm_table(const std::vector<GemmBenchRow>& rows, std::ostream& out);
// One JSON object per line: rows ("kind": "gemm") then totals ("kind": "total").
void print_gemm_json(const std::vector<GemmBenchRow>& rows, std::ostream& out);

}  // namespace petaring::cli
