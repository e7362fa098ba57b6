// Collectives over the MPI transport, run under mpirun by tests/mpi/collectives.sh:
//   mpirun -np N collectives_mpi [--missing-rank | --bench [segment_bytes...]]
// Checks allreduce (sum, average) against a double-precision reference on awkward counts,
// bit-identity across ranks, broadcast from every root, barrier, messages split into
// pieces, and (--missing-rank) the timeout when a rank never shows up. Exits non-zero on any mismatch. With --bench, rank 0 prints a table of our ring
// against MPI_Allreduce (nccl-tests style algbw/busbw).
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "collectives/bootstrap.h"
#include "collectives/ring.h"
#include "collectives/transport/mpi/mpi_transport.h"
#include "runtime/error.h"

namespace petaring {
namespace {

int g_failures = 0;

void fail(int rank, const std::string& what) {
  std::fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what.c_str());
  ++g_failures;
}

float input_value(int rank, size_t i) {
  uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ (rank + 1) * 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<float>(static_cast<int64_t>(h % 20001) - 10000) / 997.0f;
}

// Checks one allreduce: against the reference, then rank 0's bytes against everyone's
// (sent with our broadcast, so broadcast is checked too).
void check_allreduce(Communicator& comm, size_t count, ReduceOp op) {
  const int n = comm.size(), r = comm.rank();
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = input_value(r, i);
  comm.allreduce(data.data(), count, DType::kF32, op);
  const char* name = op == ReduceOp::kSum ? "sum" : "average";
  for (size_t i = 0; i < count; ++i) {
    double sum = 0, magnitude = 0;
    for (int rank = 0; rank < n; ++rank) {
      sum += input_value(rank, i);
      magnitude += std::fabs(input_value(rank, i));
    }
    double expected = op == ReduceOp::kSum ? sum : sum / n;
    double scale = op == ReduceOp::kSum ? magnitude : magnitude / n;
    if (std::fabs(data[i] - expected) > (n + 1) * 1.2e-7 * scale + 1e-30) {
      fail(r, str_cat(name, " of ", count, ": element ", i, " is ", data[i], ", expected ",
                      expected));
      return;
    }
  }
  std::vector<float> root_copy = data;
  comm.broadcast(root_copy.data(), count * sizeof(float), 0);
  if (count > 0 && std::memcmp(root_copy.data(), data.data(), count * sizeof(float)) != 0) {
    fail(r, str_cat(name, " of ", count, ": result differs from rank 0's bytes"));
  }
}

void check_broadcast_every_root(Communicator& comm) {
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<int> data(300'001, comm.rank());
    comm.broadcast(data.data(), data.size() * sizeof(int), root);
    for (int value : data) {
      if (value != root) return fail(comm.rank(), str_cat("broadcast from ", root, " got ", value));
    }
  }
  comm.barrier();
}

// A second transport whose messages travel as 1000-byte pieces: the path that splits
// messages above INT_MAX bytes, at a size a test can afford.
void check_split_messages(int rank) {
  MpiTransportOptions options;
  options.max_piece_bytes = 1000;
  MpiTransport transport(MPI_COMM_WORLD, options);
  const size_t count = 100'003;
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = input_value(rank, i);
  RingOptions ring;
  ring.timeout = std::chrono::seconds(30);
  ring.segment_bytes = 64 * 1024;  // 66 pieces per segment
  ring_allreduce_f32(transport, data.data(), count, ReduceOp::kSum, ring);
  for (size_t i = 0; i < count; i += 997) {
    double sum = 0;
    for (int peer = 0; peer < transport.size(); ++peer) sum += input_value(peer, i);
    if (std::fabs(data[i] - sum) > 1e-3) return fail(rank, str_cat("split messages: element ", i));
  }
}

// Seconds per call, the slowest rank's mean over `iterations` after a warm-up.
template <typename Fn>
double time_calls(int iterations, Fn fn) {
  fn();
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) fn();
  double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double slowest = 0;
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest / iterations;
}

// Our ring (through the transport, at each segment size) against MPI_Allreduce.
void bench(Communicator& comm, const std::vector<size_t>& segment_sizes) {
  const int n = comm.size();
  if (comm.rank() == 0) {
    std::printf("%10s %14s %10s %10s %10s\n", "bytes", "algorithm", "time_us", "algbw_GB/s",
                "busbw_GB/s");
  }
  uint64_t tag = uint64_t{1} << 20;  // apart from the communicator's own tags
  for (size_t bytes : {size_t(1) << 20, size_t(4) << 20}) {
    std::vector<float> data(bytes / sizeof(float), 1.0f);
    std::vector<std::pair<std::string, double>> rows;
    for (size_t segment : segment_sizes) {
      RingOptions options;
      options.segment_bytes = segment;
      options.timeout = std::chrono::seconds(30);
      std::string name = segment == 0 ? "ring/auto" : str_cat("ring/", segment / 1024, "K");
      rows.emplace_back(name, time_calls(50, [&] {
        options.tag = tag++;
        ring_allreduce_f32(comm.transport(), data.data(), data.size(), ReduceOp::kSum, options);
      }));
    }
    rows.emplace_back("MPI_Allreduce", time_calls(50, [&] {
      MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(data.size()), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
    }));
    if (comm.rank() != 0) continue;
    for (const auto& [name, seconds] : rows) {
      double algbw = bytes / seconds / 1e9;
      std::printf("%10zu %14s %10.1f %10.2f %10.2f\n", bytes, name.c_str(), seconds * 1e6, algbw,
                  algbw * 2.0 * (n - 1) / n);
    }
  }
}

// The last rank never calls the allreduce: every other rank must get kTimeout, and rank 0,
// which receives from the last rank, must name it.
void check_missing_rank(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  comm.set_timeout(std::chrono::milliseconds(500));
  if (r != n - 1) {
    std::vector<float> data(10'000, 1.0f);
    try {
      comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
      fail(r, "allreduce with a missing rank returned");
    } catch (const Error& error) {
      std::string text = error.what();
      if (error.kind() != ErrorKind::kTimeout) fail(r, "expected a timeout, got: " + text);
      if (r == 0 && text.find("rank " + std::to_string(n - 1)) == std::string::npos) {
        fail(r, "the timeout does not name rank " + std::to_string(n - 1) + ": " + text);
      }
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

int run(int argc, char** argv) {
  WorldInfo info;
  std::unique_ptr<Communicator> comm = make_world_communicator(&info);
  comm->set_timeout(std::chrono::seconds(30));
  const int r = comm->rank(), n = comm->size();
  if (!info.launched_by_mpi || info.size != n || info.rank != r) {
    fail(r, str_cat("bootstrap: launched_by_mpi ", info.launched_by_mpi, ", rank ", info.rank,
                    " of ", info.size, ", communicator rank ", r, " of ", n));
  }
  if (info.local_rank < 0 || info.local_rank >= info.local_size || info.local_size > n) {
    fail(r, str_cat("bootstrap: local rank ", info.local_rank, " of ", info.local_size));
  }
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--bench") {  // --bench [segment_bytes...]
    std::vector<size_t> segments;
    for (int i = 2; i < argc; ++i) segments.push_back(std::stoul(argv[i]));
    if (segments.empty()) segments.push_back(0);  // 0: the automatic size
    bench(*comm, segments);
    return 0;
  }
  std::vector<size_t> counts = {0, 1, 2, 7, size_t(n - 1), size_t(n + 1), 13, 997, 65537,
                                1'000'003};
  for (size_t count : counts) {
    check_allreduce(*comm, count, ReduceOp::kSum);
    check_allreduce(*comm, count, ReduceOp::kAverage);
  }
  check_broadcast_every_root(*comm);
  check_split_messages(r);
  if (mode == "--missing-rank" && n > 1) check_missing_rank(*comm);
  int failures = g_failures, total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (r == 0) std::printf("collectives_mpi: %d ranks, %d failure(s)\n", n, total);
  return total == 0 ? 0 : 1;
}

}  // namespace
}  // namespace petaring

int main(int argc, char** argv) {
  try {
    return petaring::run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "collectives_mpi: %s\n", error.what());
    return 1;
  }
}
