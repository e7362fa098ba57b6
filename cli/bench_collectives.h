// `petaring bench allreduce | broadcast | reduce_scatter | allgather`: nccl-tests-style
// sweeps of one collective over message sizes, run as the ranks of an mpirun job (or
// alone), optionally beside the MPI library's own collective on the same buffers.
//
// Terms (the code uses these words):
//   size     bytes of the whole buffer a collective moves: the in-place buffer of allreduce
//            and broadcast, the input (n chunks) of reduce_scatter, the output of
//            allgather (nccl-tests' "size" column).
//   count    elements per rank of the call: the whole buffer for allreduce and broadcast,
//            one chunk (size / n) for reduce_scatter and allgather.
//   block    `iters` back-to-back calls, timed on every rank after a barrier. A block's
//            time is the slowest rank's mean time per call.
//   time     the median over `blocks` blocks of the block times (after `warmup` calls).
//   algbw    size / time. busbw = algbw x 2(n-1)/n (allreduce), x (n-1)/n (reduce_scatter,
//            allgather), x 1 (broadcast): what each rank's link carries, so that figures
//            compare across world sizes.
//   wrong    elements that differ from the expected values, summed over ranks, in one
//            untimed call on freshly patterned buffers (--check); -1 when not checked.
// Sizes are rounded down to a whole number of elements (of n elements for reduce_scatter
// and allgather), at least one such unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace petaring {
class Communicator;
}

namespace petaring::cli {

enum class Collective { kAllreduce, kBroadcast, kReduceScatter, kAllgather };

std::string collective_name(Collective collective);

struct CollectiveBenchOptions {
  Collective collective = Collective::kAllreduce;
  std::string min_bytes = "8";    // "8", "64K", "64M", "1G" (K, M, G: powers of 1024)
  std::string max_bytes = "64M";
  int step_factor = 2;            // next size = size x step_factor
  int iters = 20;                 // calls per timed block
  int warmup = 5;                 // untimed calls per size and side, before the blocks
  int blocks = 5;                 // timed blocks per size and side (median reported)
  std::string dtype = "f32";
  std::string op = "sum";         // sum, avg (and max, min once the Communicator has them)
  int root = 0;                   // broadcast only
  std::string baseline = "none";  // none or mpi
  std::string transport = "default";  // default, shm, tcp, mpi, auto: PETARING_TRANSPORT
  std::string signature_check = "on";  // on, off: the Communicator's per-call agreement check
  bool check = false;
  bool json = false;
};

// Times and correctness of one side (ours or the baseline) at one size.
struct SideResult {
  double time_us = 0;
  double algbw_gbps = 0;
  double busbw_gbps = 0;
  int64_t wrong = -1;  // -1: not checked
};

struct CollectiveBenchRow {
  size_t bytes = 0;
  size_t count = 0;
  SideResult ours;
  bool has_baseline = false;
  SideResult mpi;
  double ratio = 0;  // ours.time_us / mpi.time_us
};

// What the table header and every JSON line say about the run.
struct CollectiveBenchContext {
  int np = 1;
  std::string transport;
  std::string algorithm;
  std::string baseline;  // "mpi", "none", or "unavailable: <why>"
  std::string mpi_library;
  std::string signature_check;  // "on", "off"
};

// "64M" -> 67108864; throws kInvalidArgument naming `flag` when malformed.
size_t parse_byte_size(const std::string& text, const std::string& flag);
// The sweep's sizes in bytes (rounded as the header says, duplicates dropped).
std::vector<size_t> sweep_sizes(size_t min_bytes, size_t max_bytes, int step_factor,
                                size_t unit_bytes);
// busbw / algbw for `collective` over n ranks (nccl-tests' definitions).
double bus_factor(Collective collective, int n);

void print_collective_header(const CollectiveBenchOptions& options,
                             const CollectiveBenchContext& context, std::ostream& out);
void print_collective_row(const CollectiveBenchOptions& options,
                          const CollectiveBenchContext& context, const CollectiveBenchRow& row,
                          std::ostream& out);
void print_collective_footer(const std::vector<CollectiveBenchRow>& rows, std::ostream& out);

// Measuring (cli/bench_collectives_run.cc). Each returns "" when available, else why not.
std::string collective_unavailable(Collective collective);
std::string reduce_op_unavailable(const std::string& op);
std::string mpi_baseline_unavailable(Collective collective, DType dtype);
// Turns the Communicator's per-call signature check on or off; false when this build's
// Communicator has no such switch (the check is then whatever it always does).
bool set_signature_check(Communicator& comm, bool on);
// One row: every rank calls it with the same arguments; the row is the same on every rank.
CollectiveBenchRow measure_size(const CollectiveBenchOptions& options, DType dtype,
                                Communicator& comm, bool with_mpi, size_t bytes);

// The sweep on this rank (every rank of `comm` must call it with the same options); rank 0
// prints the table or JSON lines to `out`. Returns 0, or 1 when --check found wrong values.
// Throws kInvalidArgument for bad options (before any collective call) and
// kUnimplemented for a collective, dtype or op this build lacks.
int run_collective_bench(const CollectiveBenchOptions& options, Communicator& comm,
                         bool launched_by_mpi, std::ostream& out);

}  // namespace petaring::cli
