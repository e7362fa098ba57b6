// The measuring half of `petaring bench <collective>` (terms: cli/bench_collectives.h):
// buffers and their patterns, the calls of each side (ours, MPI), the checks, the timed
// blocks, and the reduction of every rank's times to the slowest rank's.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

#include "cli/bench_collectives.h"
#include "collectives/communicator.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::cli {
namespace {

// ---- patterns and checks ------------------------------------------------------------

// Small integers: exact in every dtype, and so are their sums over up to 32 ranks (at most
// 128 in magnitude, within bf16's 8 significant bits). Rank- and index-dependent, so a
// chunk landing in the wrong place or a rank's data missing shows up.
double pattern(int rank, size_t i) { return static_cast<double>((i * 7 + rank * 5) % 9) - 4.0; }
constexpr double kSentinel = 99;  // what non-root ranks hold before a broadcast

void store(void* base, DType dtype, size_t i, double v) {
  switch (dtype) {
    case DType::kF32: static_cast<float*>(base)[i] = static_cast<float>(v); return;
    case DType::kBF16: static_cast<BF16*>(base)[i] = bf16_from_f32(static_cast<float>(v)); return;
    case DType::kF16: static_cast<F16*>(base)[i] = f16_from_f32(static_cast<float>(v)); return;
    case DType::kI32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v); return;
    case DType::kI64: static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v); return;
    default: PR_FAIL(kUnimplemented, "bench: dtype ", dtype_name(dtype), " is not benchmarked");
  }
}

double load(const void* base, DType dtype, size_t i) {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(base)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const BF16*>(base)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const F16*>(base)[i]);
    case DType::kI32: return static_cast<const int32_t*>(base)[i];
    case DType::kI64: return static_cast<double>(static_cast<const int64_t*>(base)[i]);
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

// The reduction of pattern(q, i) over ranks q, as `op` defines it.
double expected_reduction(const std::string& op, int n, size_t i) {
  double sum = 0, max = -1e300, min = 1e300;
  for (int q = 0; q < n; ++q) {
    double v = pattern(q, i);
    sum += v;
    max = std::max(max, v);
    min = std::min(min, v);
  }
  if (op == "avg") return sum / n;
  if (op == "max") return max;
  if (op == "min") return min;
  return sum;
}

// Sums and extremes of the pattern are exact; an average (floats only) is exact to the
// dtype's rounding of the one division.
bool matches(double got, double want, DType dtype, const std::string& op) {
  if (std::isnan(got)) return false;
  if (op != "avg") return got == want;
  double scale = std::max(1.0, std::abs(want));
  switch (dtype) {
    case DType::kF32: return std::abs(got - want) <= 1e-6 * scale;
    case DType::kBF16: return std::abs(got - want) <= 0x1p-8 * scale;
    case DType::kF16: return std::abs(got - want) <= 0x1p-11 * scale;
    default: return got == want;
  }
}

// ---- buffers ------------------------------------------------------------------------

// `in` feeds the call and `out` receives its result; allreduce and broadcast work in
// place, so there `out` is `in`; reduce_scatter and allgather use two buffers.
struct Buffers {
  std::vector<std::byte> in_storage, out_storage;
  void* in = nullptr;
  void* out = nullptr;
  size_t count = 0;      // elements per rank of the call (header: "count")
  size_t in_count = 0;   // elements in `in`
  size_t out_count = 0;  // elements in `out`
};

Buffers make_buffers(Collective c, DType dtype, size_t bytes, int n) {
  Buffers b;
  const size_t total = bytes / dtype_size(dtype);
  const bool chunked = c == Collective::kReduceScatter || c == Collective::kAllgather;
  b.count = chunked ? total / static_cast<size_t>(n) : total;
  b.in_count = c == Collective::kAllgather ? b.count : total;
  b.out_count = c == Collective::kReduceScatter ? b.count : total;
  b.in_storage.resize(b.in_count * dtype_size(dtype));
  b.in = b.in_storage.data();
  if (chunked) {
    b.out_storage.resize(b.out_count * dtype_size(dtype));
    b.out = b.out_storage.data();
  } else {
    b.out = b.in;
  }
  return b;
}

void fill_pattern(Buffers& b, Collective c, DType dtype, int rank, int root) {
  const bool sentinel = c == Collective::kBroadcast && rank != root;
  for (size_t i = 0; i < b.in_count; ++i) store(b.in, dtype, i, sentinel ? kSentinel : pattern(rank, i));
  if (b.out != b.in) {
    for (size_t i = 0; i < b.out_count; ++i) store(b.out, dtype, i, kSentinel);
  }
}

int64_t count_wrong(const Buffers& b, const CollectiveBenchOptions& o, DType dtype, int rank, int n) {
  int64_t wrong = 0;
  for (size_t i = 0; i < b.out_count; ++i) {
    double want = 0;
    switch (o.collective) {
      case Collective::kAllreduce: want = expected_reduction(o.op, n, i); break;
      case Collective::kBroadcast: want = pattern(o.root, i); break;
      case Collective::kReduceScatter:
        want = expected_reduction(o.op, n, static_cast<size_t>(rank) * b.count + i);
        break;
      case Collective::kAllgather: want = pattern(static_cast<int>(i / b.count), i % b.count); break;
    }
    if (!matches(load(b.out, dtype, i), want, dtype, o.op)) ++wrong;
  }
  return wrong;
}

// ---- the two sides -------------------------------------------------------------------

template <typename Op>
concept HasMaxMin = requires { Op::kMax; Op::kMin; };

// The Communicator's op for --op, or nothing when this build lacks it.
template <typename Op = ReduceOp>
std::optional<Op> our_reduce_op(const std::string& name) {
  if (name == "sum") return Op::kSum;
  if (name == "avg") return Op::kAverage;
  if constexpr (HasMaxMin<Op>) {
    if (name == "max") return Op::kMax;
    if (name == "min") return Op::kMin;
  }
  return std::nullopt;
}

// reduce_scatter and allgather light up when the Communicator has them with these shapes
// (send, recv, per-rank count, dtype[, op]); until then the sub-commands say so.
template <typename C>
concept HasReduceScatter = requires(C& c, const void* send, void* recv, size_t count, DType d, ReduceOp op) {
  c.reduce_scatter(send, recv, count, d, op);
};
template <typename C>
concept HasAllgather = requires(C& c, const void* send, void* recv, size_t count, DType d) {
  c.allgather(send, recv, count, d);
};

template <typename C>
concept HasSignatureSwitch = requires(C& c, bool on) { c.set_check_signatures(on); };

template <typename C>
bool toggle_signature_check(C& comm, bool on) {
  if constexpr (HasSignatureSwitch<C>) {
    comm.set_check_signatures(on);
    return true;
  }
  return false;
}

template <typename C = Communicator>
std::function<void()> our_call(C& comm, Buffers& b, DType dtype, const CollectiveBenchOptions& o) {
  switch (o.collective) {
    case Collective::kAllreduce: {
      ReduceOp op = *our_reduce_op(o.op);
      return [&comm, &b, dtype, op] { comm.allreduce(b.in, b.count, dtype, op); };
    }
    case Collective::kBroadcast: {
      size_t bytes = b.count * dtype_size(dtype);
      return [&comm, &b, bytes, root = o.root] { comm.broadcast(b.in, bytes, root); };
    }
    case Collective::kReduceScatter:
      if constexpr (HasReduceScatter<C>) {
        ReduceOp op = *our_reduce_op(o.op);
        return [&comm, &b, dtype, op] { comm.reduce_scatter(b.in, b.out, b.count, dtype, op); };
      }
      break;
    case Collective::kAllgather:
      if constexpr (HasAllgather<C>) {
        return [&comm, &b, dtype] { comm.allgather(b.in, b.out, b.count, dtype); };
      }
      break;
  }
  PR_FAIL(kUnimplemented, "bench ", collective_name(o.collective), ": ",
          collective_unavailable(o.collective));
}

std::optional<MPI_Datatype> mpi_type(DType dtype, bool reduces) {
  switch (dtype) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
    case DType::kBF16:
    case DType::kF16: return reduces ? std::nullopt : std::optional<MPI_Datatype>(MPI_UINT16_T);
    default: return std::nullopt;
  }
}

// MPI has no average: the baseline sums, then divides on every rank (inside the timing).
MPI_Op mpi_op(const std::string& op) {
  if (op == "max") return MPI_MAX;
  if (op == "min") return MPI_MIN;
  return MPI_SUM;
}

// Averages are f32 only: the baseline has no 16-bit reductions and integers have no average.
void divide(void* data, size_t count, DType dtype, int n) {
  PR_CHECK(dtype == DType::kF32) << "MPI baseline average of " << dtype_name(dtype);
  float* values = static_cast<float*>(data);
  for (size_t i = 0; i < count; ++i) values[i] /= static_cast<float>(n);
}

std::function<void()> mpi_call(Buffers& b, DType dtype, const CollectiveBenchOptions& o, int n) {
  const bool reduces = o.collective == Collective::kAllreduce || o.collective == Collective::kReduceScatter;
  MPI_Datatype type = *mpi_type(dtype, reduces);
  MPI_Op op = mpi_op(o.op);
  const int count = static_cast<int>(b.count);
  const bool average = o.op == "avg";
  auto ok = [](int code, const char* what) {
    if (code != MPI_SUCCESS) PR_FAIL(kFailedPrecondition, "bench baseline: ", what, " failed with MPI error ", code);
  };
  switch (o.collective) {
    case Collective::kAllreduce:
      return [&b, type, op, count, average, dtype, n, ok] {
        ok(MPI_Allreduce(MPI_IN_PLACE, b.in, count, type, op, MPI_COMM_WORLD), "MPI_Allreduce");
        if (average) divide(b.in, b.count, dtype, n);
      };
    case Collective::kBroadcast:
      return [&b, type, count, root = o.root, ok] {
        ok(MPI_Bcast(b.in, count, type, root, MPI_COMM_WORLD), "MPI_Bcast");
      };
    case Collective::kReduceScatter:
      return [&b, type, op, count, average, dtype, n, ok] {
        ok(MPI_Reduce_scatter_block(b.in, b.out, count, type, op, MPI_COMM_WORLD), "MPI_Reduce_scatter_block");
        if (average) divide(b.out, b.count, dtype, n);
      };
    case Collective::kAllgather:
      return [&b, type, count, ok] {
        ok(MPI_Allgather(b.in, count, type, b.out, count, type, MPI_COMM_WORLD), "MPI_Allgather");
      };
  }
  return {};
}

// ---- timing ---------------------------------------------------------------------------

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t m = values.size();
  return m % 2 ? values[m / 2] : (values[m / 2 - 1] + values[m / 2]) / 2;
}

// The value every rank holds, for every entry, at its largest over ranks (or summed, for
// counts): each rank adds its values in its own slot of a zeroed vector, then one f32
// allreduce (exact: every slot but one is zero).
std::vector<double> across_ranks(Communicator& comm, const std::vector<double>& local, bool sum) {
  const size_t k = local.size(), n = static_cast<size_t>(comm.size());
  std::vector<float> slots(k * n, 0.0f);
  for (size_t i = 0; i < k; ++i) slots[static_cast<size_t>(comm.rank()) * k + i] = static_cast<float>(local[i]);
  comm.allreduce(slots.data(), slots.size(), DType::kF32, ReduceOp::kSum);
  std::vector<double> result(k, 0.0);
  for (size_t i = 0; i < k; ++i) {
    for (size_t r = 0; r < n; ++r) {
      double v = slots[r * k + i];
      result[i] = sum ? result[i] + v : (r == 0 ? v : std::max(result[i], v));
    }
  }
  return result;
}

// Mean microseconds per call of `iters` calls, started right after a barrier.
double time_block(Communicator& comm, const std::function<void()>& call, int iters) {
  comm.barrier();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) call();
  std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / iters;
}

}  // namespace

std::string collective_unavailable(Collective c) {
  if (c == Collective::kAllreduce || c == Collective::kBroadcast) return "";
  if (c == Collective::kReduceScatter && HasReduceScatter<Communicator>) return "";
  if (c == Collective::kAllgather && HasAllgather<Communicator>) return "";
  return str_cat("Communicator::", collective_name(c), " is not available yet in this build ",
                 "(collectives/communicator.h); benchmark allreduce or broadcast instead");
}

bool set_signature_check(Communicator& comm, bool on) { return toggle_signature_check(comm, on); }

std::string reduce_op_unavailable(const std::string& op) {
  if (our_reduce_op(op)) return "";
  return str_cat("--op ", op, " is not available yet: the Communicator has no such ReduceOp ",
                 "(collectives/communicator.h); use sum or avg");
}

std::string mpi_baseline_unavailable(Collective c, DType dtype) {
  bool reduces = c == Collective::kAllreduce || c == Collective::kReduceScatter;
  if (mpi_type(dtype, reduces)) return "";
  return str_cat("MPI has no standard ", dtype_name(dtype), " reduction");
}

// One size: the check (when asked), then warm-up, then the timed blocks of the two sides
// interleaved (their order alternating), then the slowest rank's times.
CollectiveBenchRow measure_size(const CollectiveBenchOptions& o, DType dtype, Communicator& comm,
                                bool with_mpi, size_t bytes) {
  const int n = comm.size(), rank = comm.rank();
  Buffers b = make_buffers(o.collective, dtype, bytes, n);
  std::vector<std::function<void()>> sides = {our_call(comm, b, dtype, o)};
  if (with_mpi) sides.push_back(mpi_call(b, dtype, o, n));
  std::vector<double> wrong(sides.size(), 0.0);
  if (o.check) {
    for (size_t s = 0; s < sides.size(); ++s) {
      fill_pattern(b, o.collective, dtype, rank, o.root);
      comm.barrier();
      sides[s]();
      wrong[s] = static_cast<double>(count_wrong(b, o, dtype, rank, n));
    }
    wrong = across_ranks(comm, wrong, /*sum=*/true);
  }
  // Zeros while timing: repeated in-place sums stay finite and the data cost is the same.
  std::memset(b.in, 0, b.in_storage.size());
  if (b.out != b.in) std::memset(b.out, 0, b.out_storage.size());
  for (auto& call : sides) {
    for (int i = 0; i < o.warmup; ++i) call();
  }
  std::vector<double> times(sides.size() * static_cast<size_t>(o.blocks));
  for (int block = 0; block < o.blocks; ++block) {
    for (size_t turn = 0; turn < sides.size(); ++turn) {
      size_t s = (turn + static_cast<size_t>(block)) % sides.size();
      times[s * static_cast<size_t>(o.blocks) + static_cast<size_t>(block)] = time_block(comm, sides[s], o.iters);
    }
  }
  times = across_ranks(comm, times, /*sum=*/false);
  CollectiveBenchRow row;
  row.bytes = bytes;
  row.count = b.count;
  const double factor = bus_factor(o.collective, n);
  for (size_t s = 0; s < sides.size(); ++s) {
    SideResult& side = s == 0 ? row.ours : row.mpi;
    auto first = times.begin() + static_cast<std::ptrdiff_t>(s * static_cast<size_t>(o.blocks));
    // f32 slots carry ~7 digits: keep nanoseconds.
    side.time_us = std::round(median(std::vector<double>(first, first + o.blocks)) * 1e3) / 1e3;
    side.algbw_gbps = static_cast<double>(bytes) / (side.time_us * 1e3);
    side.busbw_gbps = side.algbw_gbps * factor;
    side.wrong = o.check ? static_cast<int64_t>(wrong[s]) : -1;
  }
  row.has_baseline = with_mpi;
  if (with_mpi) row.ratio = row.ours.time_us / row.mpi.time_us;
  return row;
}

}  // namespace petaring::cli
