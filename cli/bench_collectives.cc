// `petaring bench allreduce | broadcast | reduce_scatter | allgather` (terms and method:
// cli/bench_collectives.h): flags, the sweep, and the nccl-tests-style table or JSON lines.
//   mpirun -np 2 petaring bench allreduce --min-bytes 8 --max-bytes 64M --check --baseline mpi
#include "cli/bench_collectives.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli/bench.h"
#include "collectives/bootstrap.h"
#include "runtime/error.h"

namespace petaring::cli {
namespace {

constexpr size_t kMaxBytes = size_t{8} << 30;

bool is_chunked(Collective c) { return c == Collective::kReduceScatter || c == Collective::kAllgather; }
bool reduces(Collective c) { return c == Collective::kAllreduce || c == Collective::kReduceScatter; }

std::string algorithm_name(Collective c) {
  return c == Collective::kBroadcast ? "pipelined-chain" : "ring";
}

std::string mpi_function(Collective c) {
  switch (c) {
    case Collective::kAllreduce: return "MPI_Allreduce";
    case Collective::kBroadcast: return "MPI_Bcast";
    case Collective::kReduceScatter: return "MPI_Reduce_scatter_block";
    case Collective::kAllgather: return "MPI_Allgather";
  }
  return "?";
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<size_t>(length));
  return version.substr(0, version.find_first_of(",\n"));
}

template <typename... Args>
std::string format(const char* pattern, Args... args) {
  char line[512];
  std::snprintf(line, sizeof line, pattern, args...);
  return line;
}

std::string wrong_text(int64_t wrong) { return wrong < 0 ? "N/A" : std::to_string(wrong); }

// Everything that can be checked before MPI starts, so that every rank fails alike.
void validate(const CollectiveBenchOptions& o) {
  const std::string what = "bench " + collective_name(o.collective);
  size_t min_bytes = parse_byte_size(o.min_bytes, "--min-bytes");
  size_t max_bytes = parse_byte_size(o.max_bytes, "--max-bytes");
  if (min_bytes == 0 || min_bytes > max_bytes || max_bytes > kMaxBytes) {
    PR_FAIL(kInvalidArgument, what, ": need 1 <= --min-bytes <= --max-bytes <= 8G, got ",
            min_bytes, " and ", max_bytes);
  }
  DType dtype;
  if (!parse_dtype(o.dtype, &dtype) || dtype == DType::kU8) {
    PR_FAIL(kInvalidArgument, what, ": --dtype '", o.dtype, "': use f32, bf16, f16, i32 or i64");
  }
  if (std::string why = collective_unavailable(o.collective); !why.empty()) {
    PR_FAIL(kUnimplemented, what, ": ", why);
  }
  if (reduces(o.collective)) {
    if (std::string why = reduce_op_unavailable(o.op); !why.empty()) PR_FAIL(kUnimplemented, what, ": ", why);
  }
  if (reduces(o.collective) && o.op == "avg" && (dtype == DType::kI32 || dtype == DType::kI64)) {
    PR_FAIL(kInvalidArgument, what, ": --op avg of integers has no exact result; use --op sum or a float --dtype");
  }
  if (o.baseline == "mpi" && max_bytes / dtype_size(dtype) > std::numeric_limits<int>::max()) {
    PR_FAIL(kInvalidArgument, what, ": --baseline mpi counts elements in an int; lower --max-bytes");
  }
}

// "mpi", "none", or "unavailable: why".
std::string choose_baseline(const CollectiveBenchOptions& o, DType dtype, bool launched_by_mpi) {
  if (o.baseline != "mpi") return "none";
  if (!launched_by_mpi) {
    return "unavailable: not launched by mpirun (run under mpirun -np N to compare with MPI)";
  }
  std::string why = mpi_baseline_unavailable(o.collective, dtype);
  return why.empty() ? "mpi" : "unavailable: " + why;
}

}  // namespace

std::string collective_name(Collective c) {
  switch (c) {
    case Collective::kAllreduce: return "allreduce";
    case Collective::kBroadcast: return "broadcast";
    case Collective::kReduceScatter: return "reduce_scatter";
    case Collective::kAllgather: return "allgather";
  }
  return "?";
}

size_t parse_byte_size(const std::string& text, const std::string& flag) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string suffix = text.substr(digits);
  size_t shift = suffix.empty() || suffix == "B" ? 0 : 99;
  for (auto [letter, bits] : {std::pair{'K', 10}, {'M', 20}, {'G', 30}}) {
    if (suffix == std::string(1, letter) || suffix == std::string(1, letter) + "B" ||
        suffix == std::string(1, letter) + "iB") {
      shift = static_cast<size_t>(bits);
    }
  }
  if (digits == 0 || digits > 12 || shift == 99) {
    PR_FAIL(kInvalidArgument, flag, " '", text, "' is not a size; write bytes, e.g. 8, 64K, 64M, 1G");
  }
  return std::stoull(text.substr(0, digits)) << shift;
}

std::vector<size_t> sweep_sizes(size_t min_bytes, size_t max_bytes, int step_factor, size_t unit) {
  std::vector<size_t> sizes;
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= static_cast<size_t>(step_factor)) {
    size_t rounded = std::max(unit, bytes / unit * unit);
    if (sizes.empty() || sizes.back() != rounded) sizes.push_back(rounded);
    if (bytes > max_bytes / static_cast<size_t>(step_factor)) break;  // no overflow
  }
  return sizes;
}

double bus_factor(Collective c, int n) {
  switch (c) {
    case Collective::kAllreduce: return 2.0 * (n - 1) / n;
    case Collective::kBroadcast: return 1.0;
    default: return static_cast<double>(n - 1) / n;
  }
}

void print_collective_header(const CollectiveBenchOptions& o, const CollectiveBenchContext& c,
                             std::ostream& out) {
  const std::string name = collective_name(o.collective);
  const char* factor = o.collective == Collective::kAllreduce ? "2(n-1)/n"
                       : o.collective == Collective::kBroadcast ? "1" : "(n-1)/n";
  out << "# petaring bench " << name << ": " << c.np << " rank(s), transport " << c.transport
      << ", algorithm " << c.algorithm << (is_chunked(o.collective) ? ", out of place" : ", in place")
      << ", signature check " << c.signature_check
      << "\n# time: median over " << o.blocks << " timed blocks of the slowest rank's mean per call ("
      << o.iters << " calls a block, after a barrier; " << o.warmup << " warm-up calls per size)\n"
      << "# busbw = algbw x " << factor << "; #wrong: elements off the expected values, all ranks"
      << (o.check ? "" : " (N/A: no --check)") << "\n";
  if (c.baseline == "mpi") {
    out << "# baseline: " << mpi_function(o.collective) << " (" << c.mpi_library
        << ") on the same buffers, blocks interleaved; ratio = our time / MPI time (< 1: ours faster)\n";
  } else if (c.baseline != "none") {
    out << "# baseline mpi " << c.baseline << "\n";
  }
  out << format("#%11s %12s %6s %6s %5s %10s %8s %8s %7s", "size", "count", "type", "redop", "root",
                "time", "algbw", "busbw", "#wrong");
  if (c.baseline == "mpi") out << format(" %10s %8s %7s %7s", "mpi_time", "mpi_busbw", "ratio", "#wrong");
  out << "\n" << format("#%11s %12s %6s %6s %5s %10s %8s %8s %7s", "(B)", "(elements)", "", "", "",
                        "(us)", "(GB/s)", "(GB/s)", "");
  if (c.baseline == "mpi") out << format(" %10s %8s %7s %7s", "(us)", "(GB/s)", "", "");
  out << "\n";
}

void print_collective_row(const CollectiveBenchOptions& o, const CollectiveBenchContext& c,
                          const CollectiveBenchRow& r, std::ostream& out) {
  const std::string op = reduces(o.collective) ? o.op : "none";
  const int root = o.collective == Collective::kBroadcast ? o.root : -1;
  if (o.json) {
    nlohmann::json line = {
        {"collective", collective_name(o.collective)}, {"bytes", r.bytes}, {"count", r.count},
        {"dtype", o.dtype}, {"op", op}, {"root", root}, {"np", c.np}, {"transport", c.transport},
        {"algorithm", c.algorithm}, {"time_us", r.ours.time_us}, {"algbw_gbps", r.ours.algbw_gbps},
        {"busbw_gbps", r.ours.busbw_gbps}, {"iters", o.iters}, {"warmup", o.warmup},
        {"blocks", o.blocks}, {"baseline", c.baseline}, {"signature_check", c.signature_check}};
    line["wrong"] = r.ours.wrong < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.ours.wrong);
    if (r.has_baseline) {
      line["mpi_time_us"] = r.mpi.time_us;
      line["mpi_algbw_gbps"] = r.mpi.algbw_gbps;
      line["mpi_busbw_gbps"] = r.mpi.busbw_gbps;
      line["ratio"] = r.ratio;
      line["mpi_wrong"] = r.mpi.wrong < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.mpi.wrong);
    }
    out << line.dump() << std::endl;
    return;
  }
  out << format("%12zu %12zu %6s %6s %5d %10.2f %8.3f %8.3f %7s", r.bytes, r.count, o.dtype.c_str(),
                op.c_str(), root, r.ours.time_us, r.ours.algbw_gbps, r.ours.busbw_gbps,
                wrong_text(r.ours.wrong).c_str());
  if (r.has_baseline) {
    out << format(" %10.2f %8.3f %7.2f %7s", r.mpi.time_us, r.mpi.busbw_gbps, r.ratio,
                  wrong_text(r.mpi.wrong).c_str());
  }
  out << std::endl;
}

void print_collective_footer(const std::vector<CollectiveBenchRow>& rows, std::ostream& out) {
  double ours = 0, mpi = 0;
  int64_t wrong = 0;
  bool checked = false;
  for (const CollectiveBenchRow& r : rows) {
    ours += r.ours.busbw_gbps / static_cast<double>(rows.size());
    mpi += r.mpi.busbw_gbps / static_cast<double>(rows.size());
    checked = checked || r.ours.wrong >= 0;
    wrong += std::max<int64_t>(0, r.ours.wrong) + std::max<int64_t>(0, r.mpi.wrong);
  }
  out << format("# avg busbw over %zu sizes: %.3f GB/s", rows.size(), ours);
  if (!rows.empty() && rows[0].has_baseline) out << format(" (mpi %.3f GB/s)", mpi);
  out << "\n# #wrong in all: " << (checked ? std::to_string(wrong) + (wrong == 0 ? " OK" : " FAILED") : "N/A")
      << std::endl;
}

int run_collective_bench(const CollectiveBenchOptions& o, Communicator& comm, bool launched_by_mpi,
                         std::ostream& out) {
  DType dtype = DType::kF32;
  parse_dtype(o.dtype, &dtype);
  const int n = comm.size();
  if (o.root < 0 || o.root >= n) {
    PR_FAIL(kInvalidArgument, "bench ", collective_name(o.collective), ": --root ", o.root,
            " is not a rank of this ", n, "-rank job; pass a root in [0, ", n - 1, "]");
  }
  CollectiveBenchContext context;
  context.np = n;
  context.transport = comm.transport().name();
  context.algorithm = algorithm_name(o.collective);
  if (o.collective == Collective::kAllreduce) {  // the header names both; each row its own
    context.algorithm = "recursive-doubling up to " +
                        std::to_string(comm.small_message_threshold()) + " B, " +
                        comm.allreduce_algorithm(comm.small_message_threshold() + 1) + " above";
  } else if (is_chunked(o.collective)) {
    context.algorithm = std::string("ring up to ") + std::to_string(comm.small_message_threshold()) +
                        " B, " + comm.block_algorithm(comm.small_message_threshold() + 1) + " above";
  }
  context.baseline = choose_baseline(o, dtype, launched_by_mpi);
  const bool signatures_on = o.signature_check == "on";
  if (!set_signature_check(comm, signatures_on) && !signatures_on) {
    PR_FAIL(kUnimplemented, "bench ", collective_name(o.collective), ": --signature-check off is not ",
            "available: this build's Communicator has no switch for it");
  }
  context.signature_check = o.signature_check;
  if (launched_by_mpi) context.mpi_library = mpi_library_version();
  const bool rank0 = comm.rank() == 0;
  if (rank0 && o.baseline == "mpi" && context.baseline != "mpi") {
    std::cerr << "petaring: bench " << collective_name(o.collective) << ": baseline mpi "
              << context.baseline << "; measuring petaring only\n";
  }
  if (rank0 && !o.json) print_collective_header(o, context, out);
  const size_t unit = dtype_size(dtype) * (is_chunked(o.collective) ? static_cast<size_t>(n) : 1);
  std::vector<CollectiveBenchRow> rows;
  for (size_t bytes : sweep_sizes(parse_byte_size(o.min_bytes, "--min-bytes"),
                                  parse_byte_size(o.max_bytes, "--max-bytes"), o.step_factor, unit)) {
    rows.push_back(measure_size(o, dtype, comm, context.baseline == "mpi", bytes));
    CollectiveBenchContext row_context = context;
    if (o.collective == Collective::kAllreduce) row_context.algorithm = comm.allreduce_algorithm(bytes);
    if (is_chunked(o.collective)) row_context.algorithm = comm.block_algorithm(bytes);
    if (rank0) print_collective_row(o, row_context, rows.back(), out);
  }
  if (rank0 && !o.json) print_collective_footer(rows, out);
  bool wrong = std::any_of(rows.begin(), rows.end(), [](const CollectiveBenchRow& r) {
    return r.ours.wrong > 0 || r.mpi.wrong > 0;
  });
  if (rank0 && wrong) std::cerr << "petaring: bench " << collective_name(o.collective) << ": wrong results\n";
  return wrong ? 1 : 0;
}

namespace {

int run_on_world(const CollectiveBenchOptions& options) {
  validate(options);
  // --transport: the bootstrap reads PETARING_TRANSPORT (collectives/bootstrap.h).
  if (options.transport != "default") setenv("PETARING_TRANSPORT", options.transport.c_str(), 1);
  WorldInfo world;
  std::unique_ptr<Communicator> comm = make_world_communicator(&world);
  try {
    return run_collective_bench(options, *comm, world.launched_by_mpi, std::cout);
  } catch (const Error& e) {
    // Bad options and missing features fail alike on every rank: a plain exit is safe.
    if (world.size == 1 || e.kind() == ErrorKind::kInvalidArgument || e.kind() == ErrorKind::kUnimplemented) throw;
    std::fprintf(stderr, "petaring: error on rank %d (host %s): %s\n", world.rank, world.host.c_str(), e.what());
    std::fflush(stderr);
    abort_world(e.exit_code());
  }
}

void register_one(CLI::App& bench, CommandTable& table, Collective collective, const std::string& about) {
  auto o = std::make_shared<CollectiveBenchOptions>();
  o->collective = collective;
  CLI::App* sub = bench.add_subcommand(collective_name(collective), about);
  sub->add_option("--transport", o->transport, "shm, tcp, mpi (under mpirun), auto (shm within a host, the network across), or default (mpi under mpirun, auto under petaring launch); sets PETARING_TRANSPORT")->check(CLI::IsMember({"default", "shm", "tcp", "mpi", "auto"}))->capture_default_str();
  sub->add_option("--min-bytes,--min", o->min_bytes, "smallest size, e.g. 8, 64K")->capture_default_str();
  sub->add_option("--max-bytes,--max", o->max_bytes, "largest size, e.g. 64M, 1G")->capture_default_str();
  sub->add_option("--step-factor", o->step_factor, "next size = size x this")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  sub->add_option("--iters", o->iters, "calls per timed block")->check(CLI::Range(1, 1 << 24))->capture_default_str();
  sub->add_option("--warmup", o->warmup, "untimed calls per size")->check(CLI::Range(0, 1 << 24))->capture_default_str();
  sub->add_option("--blocks", o->blocks, "timed blocks per size (median reported)")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("--dtype", o->dtype, "f32, bf16, f16, i32, i64")->check(CLI::IsMember({"f32", "bf16", "f16", "i32", "i64"}))->capture_default_str();
  if (reduces(collective)) {
    sub->add_option("--op", o->op, "sum, avg, max, min")->check(CLI::IsMember({"sum", "avg", "max", "min"}))->capture_default_str();
  }
  if (collective == Collective::kBroadcast) sub->add_option("--root", o->root, "the rank that sends")->capture_default_str();
  sub->add_option("--baseline", o->baseline, "none, or mpi: also time " + mpi_function(collective))->check(CLI::IsMember({"none", "mpi"}))->capture_default_str();
  sub->add_option("--signature-check", o->signature_check, "on, or off to time calls without the ranks' per-call agreement check")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  sub->add_flag("--check", o->check, "verify every size's results (untimed call on patterned buffers)");
  sub->add_flag("--json", o->json, "one JSON object per size instead of the table");
  table.entries.emplace_back(sub, [o] { return run_on_world(*o); });
}

}  // namespace

void register_bench_collectives(CLI::App& bench, CommandTable& table) {
  register_one(bench, table, Collective::kAllreduce, "time Communicator::allreduce over sizes (run under mpirun)");
  register_one(bench, table, Collective::kBroadcast, "time Communicator::broadcast over sizes (run under mpirun)");
  register_one(bench, table, Collective::kReduceScatter, "time Communicator::reduce_scatter over sizes (run under mpirun)");
  register_one(bench, table, Collective::kAllgather, "time Communicator::allgather over sizes (run under mpirun)");
}

}  // namespace petaring::cli
