// Collectives over the MPI transport, run under mpirun by tests/mpi/collectives.sh:
//   mpirun -np N collectives_mpi [--missing-rank | --bench [segment_bytes...]]
// Checks allreduce (sum, average) against a double-precision reference on awkward counts,
// bit-identity across ranks, every op x dtype of allreduce (both algorithms: recursive
// doubling and the ring, forced by the small-message threshold; the default threshold
// sends the small counts of check_allreduce through the first and the large through the
// second), reduce_scatter and allgather against a serial replay of the documented order
// of combination (tests/collectives has the independent
// arithmetic checks), a mismatched call (every rank must name both calls), point to
// point, broadcast from every root, barrier, messages split into pieces, and
// (--missing-rank) the timeout when a rank never shows up. Exits non-zero on any
// mismatch. With --bench, rank 0 prints a table of our ring against MPI_Allreduce
// (nccl-tests style algbw/busbw) and the cost of the signature check on small messages.
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "collectives/bootstrap.h"
#include "collectives/recursive_doubling.h"
#include "collectives/reduce.h"
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

// ---- every op and dtype ---------------------------------------------------------------

// Element i of `rank`'s input as dtype bytes: floats in about [-10, 10], integers over
// their whole range (sums wrap).
void typed_input(int rank, size_t i, DType dtype, char* out) {
  uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ (rank + 1) * 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 32;
  float f = static_cast<float>(static_cast<int64_t>(h % 200001) - 100000) / 9973.0f;
  uint16_t half = dtype == DType::kBF16 ? bf16_from_f32(f).bits : f16_from_f32(f).bits;
  int32_t i32 = static_cast<int32_t>(h);
  switch (dtype) {
    case DType::kF32: std::memcpy(out, &f, 4); break;
    case DType::kBF16: case DType::kF16: std::memcpy(out, &half, 2); break;
    case DType::kI32: std::memcpy(out, &i32, 4); break;
    default: std::memcpy(out, &h, 8); break;
  }
}

std::vector<char> typed_inputs(int rank, size_t count, DType dtype) {
  const size_t es = dtype_size(dtype);
  std::vector<char> bytes(count * es);
  for (size_t i = 0; i < count; ++i) typed_input(rank, i, dtype, bytes.data() + i * es);
  return bytes;
}

// Elements [begin, end) reduced over all ranks in the documented ring order for a chunk
// owned by `owner` (ranks owner+1, ..., owner), with reduce_into itself.
std::vector<char> replay_ring(int n, int owner, size_t begin, size_t end, size_t total,
                              DType dtype, ReduceOp op) {
  const size_t es = dtype_size(dtype);
  auto slice = [&](int rank) {
    std::vector<char> all = typed_inputs(rank, total, dtype);
    return std::vector<char>(all.begin() + begin * es, all.begin() + end * es);
  };
  std::vector<char> acc = slice((owner + 1) % n);
  for (int hop = 2; hop <= n; ++hop) {
    std::vector<char> next = slice((owner + hop) % n);
    reduce_into(acc.data(), next.data(), end - begin, dtype, op);
  }
  if (op == ReduceOp::kAverage) average_in_place(acc.data(), end - begin, dtype, n);
  return acc;
}

// Elements [0, total) reduced over all ranks in the documented recursive-doubling order
// (fold of ranks >= p into rank - p, then the balanced tree), with reduce_into itself.
std::vector<char> replay_tree(int n, size_t total, DType dtype, ReduceOp op) {
  const int p = recursive_doubling_group(n);
  std::vector<std::vector<char>> level;
  for (int a = 0; a < p; ++a) {
    level.push_back(typed_inputs(a, total, dtype));
    if (a + p < n) reduce_into(level.back().data(), typed_inputs(a + p, total, dtype).data(), total, dtype, op);
  }
  for (size_t width = level.size(); width > 1; width /= 2) {
    for (size_t k = 0; k < width / 2; ++k) {
      reduce_into(level[2 * k].data(), level[2 * k + 1].data(), total, dtype, op);
      level[k].swap(level[2 * k]);
    }
  }
  if (op == ReduceOp::kAverage) average_in_place(level[0].data(), total, dtype, n);
  return level[0];
}

// Allreduce of `what` with the algorithm the communicator picks under `threshold`, out of
// place, against the replay of that algorithm's order.
void check_typed_allreduce(Communicator& comm, DType dtype, ReduceOp op, size_t count,
                           size_t threshold, bool rejected, const std::string& what) {
  const int n = comm.size(), r = comm.rank();
  const size_t es = dtype_size(dtype);
  comm.set_small_message_threshold(threshold);
  const std::string algorithm = comm.allreduce_algorithm(count * es);
  std::vector<char> send = typed_inputs(r, count, dtype), recv(count * es, 0x5a);
  try {
    comm.allreduce(send.data(), recv.data(), count, dtype, op);
    if (rejected) fail(r, "allreduce " + what + " was accepted");
  } catch (const Error& error) {
    if (!rejected || error.kind() != ErrorKind::kInvalidArgument) {
      fail(r, str_cat("allreduce (", algorithm, ") ", what, ": ", error.what()));
    }
  }
  comm.set_small_message_threshold(Communicator::kDefaultSmallMessageThreshold);
  if (rejected) return;
  if (algorithm == "recursive-doubling") {
    if (count > 0 && replay_tree(n, count, dtype, op) != recv) {
      fail(r, str_cat("allreduce (recursive doubling) ", what, ": differs from the tree replay"));
    }
    return;
  }
  for (int c = 0; c < n; ++c) {
    RingChunk chunk = ring_chunk(count, n, c);
    std::vector<char> want = replay_ring(n, c, chunk.begin, chunk.end, count, dtype, op);
    if (!want.empty() && std::memcmp(want.data(), recv.data() + chunk.begin * es, want.size())) {
      return fail(r, str_cat("allreduce (ring) ", what, ": chunk ", c, " differs from the ring replay"));
    }
  }
}

void check_typed(Communicator& comm, DType dtype, ReduceOp op, size_t count) {
  const int n = comm.size(), r = comm.rank();
  const size_t es = dtype_size(dtype);
  const std::string what = str_cat(dtype_name(dtype), " ", reduce_op_name(op), " count ", count);
  const bool rejected = (dtype == DType::kI32 || dtype == DType::kI64) && op == ReduceOp::kAverage;
  // allreduce, out of place, through each algorithm: threshold 0 is the ring, a
  // threshold above the call's size is recursive doubling
  for (size_t threshold : {size_t(0), count * es + 1}) {
    check_typed_allreduce(comm, dtype, op, count, threshold, rejected, what);
  }
  std::vector<char> send = typed_inputs(r, count, dtype);
  // reduce_scatter: block r of n * count
  std::vector<char> blocks = typed_inputs(r, n * count, dtype), mine(count * es);
  try {
    comm.reduce_scatter(blocks.data(), mine.data(), count, dtype, op);
    std::vector<char> want = replay_ring(n, r, r * count, (r + 1) * count, n * count, dtype, op);
    if (rejected) fail(r, "reduce_scatter " + what + " was accepted");
    else if (want != mine) fail(r, str_cat("reduce_scatter ", what, ": block differs"));
  } catch (const Error& error) {
    if (!rejected || error.kind() != ErrorKind::kInvalidArgument) {
      fail(r, str_cat("reduce_scatter ", what, ": ", error.what()));
    }
  }
  // allgather (in place)
  std::vector<char> gathered(n * count * es);
  std::memcpy(gathered.data() + r * count * es, send.data(), count * es);
  comm.allgather(gathered.data() + r * count * es, gathered.data(), count, dtype);
  for (int b = 0; b < n; ++b) {
    if (typed_inputs(b, count, dtype) !=
        std::vector<char>(gathered.begin() + b * count * es, gathered.begin() + (b + 1) * count * es)) {
      return fail(r, str_cat("allgather ", what, ": block ", b, " differs"));
    }
  }
}

void check_every_op_and_dtype(Communicator& comm) {
  const int n = comm.size();
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage, ReduceOp::kMax, ReduceOp::kMin}) {
      for (size_t count : {size_t(0), size_t(1), size_t(7), size_t(n + 1), size_t(1031)}) {
        check_typed(comm, dtype, op, count);
      }
    }
  }
  check_typed(comm, DType::kBF16, ReduceOp::kSum, 100'003);
}

// Rank 1 passes another count: every rank must fail fast naming both calls, and the
// communicator must still work afterwards.
void check_mismatch(Communicator& comm) {
  const int r = comm.rank();
  if (comm.size() < 2) return;
  std::vector<float> data(100, 1.0f);
  auto start = std::chrono::steady_clock::now();
  try {
    comm.allreduce(data.data(), r == 1 ? 99 : 100, DType::kF32, ReduceOp::kSum);
    fail(r, "a mismatched allreduce returned");
  } catch (const Error& error) {
    std::string text = error.what();
    if (error.kind() != ErrorKind::kFailedPrecondition ||
        text.find("rank 0 called allreduce") == std::string::npos ||
        text.find("(count 99, f32, sum)") == std::string::npos ||
        text.find("(count 100, f32, sum)") == std::string::npos) {
      fail(r, "mismatch error does not name both calls: " + text);
    }
  }
  if (std::chrono::steady_clock::now() - start > std::chrono::seconds(5)) {
    fail(r, "the mismatch took more than 5 s to report");
  }
  float one = 1.0f;
  comm.allreduce(&one, 1, DType::kF32, ReduceOp::kSum);
  if (one != static_cast<float>(comm.size())) fail(r, "allreduce after a mismatch is wrong");
}

// Each rank sends its rank to its right neighbour twice and checks what its left sent.
void check_point_to_point(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  if (n < 2) return;
  int64_t got[2] = {-1, -1};
  for (int k = 0; k < 2; ++k) {
    int64_t out = r * 10 + k;
    if (r % 2 == 0) {
      comm.send(&out, 8, (r + 1) % n);
      comm.recv(&got[k], 8, (r + n - 1) % n);
    } else {
      comm.recv(&got[k], 8, (r + n - 1) % n);
      comm.send(&out, 8, (r + 1) % n);
    }
  }
  int left = (r + n - 1) % n;
  if (got[0] != left * 10 || got[1] != left * 10 + 1) fail(r, "send/recv pairs out of order");
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

  // The signature check on small allreduces: ceil(log2 n) extra small messages per call.
  if (comm.rank() == 0) {
    std::printf("\n%10s %14s %14s %10s\n", "bytes", "checked_us", "unchecked_us", "overhead");
  }
  for (size_t bytes : {size_t(4), size_t(256), size_t(16) << 10, size_t(1) << 20}) {
    std::vector<float> data(bytes / sizeof(float), 1.0f);
    double seconds[2];
    for (bool check : {true, false}) {
      comm.set_check_signatures(check);
      seconds[check ? 0 : 1] = time_calls(bytes >= (size_t(1) << 20) ? 50 : 500, [&] {
        comm.allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
      });
    }
    comm.set_check_signatures(true);
    if (comm.rank() == 0) {
      std::printf("%10zu %14.1f %14.1f %9.0f%%\n", bytes, seconds[0] * 1e6, seconds[1] * 1e6,
                  (seconds[0] / seconds[1] - 1) * 100);
    }
  }
}

// The last rank never calls the allreduce: every other rank must get kTimeout, and rank 0,
// which receives from the last rank, must name it.
// Sub-groups through MPI_Comm_split: parity groups (keys reversing the order) and halves,
// with allreduces on both sub-groups from two threads and asynchronous ones on the world
// at the same time; then asynchronous allreduces and abort-free Work handles on the world.
void check_split_and_async(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  std::unique_ptr<Communicator> parity = comm.split(r % 2, -r);
  std::unique_ptr<Communicator> halves = comm.split(r < n / 2 ? 0 : 1, r);
  std::unique_ptr<Communicator> none = comm.split(Communicator::kNoColor, 0);
  if (!parity || !halves || none) return fail(r, "split: unexpected null / non-null result");
  int expected_parity_size = (n - r % 2 + 1) / 2;
  if (parity->size() != expected_parity_size || parity->rank() != (n - 1 - r) / 2) {
    fail(r, str_cat("split: parity group rank ", parity->rank(), " of ", parity->size()));
  }
  auto run = [&](Communicator& group, int64_t expected, std::string* error) {
    try {
      for (int round = 0; round < 10; ++round) {
        std::vector<int64_t> data(round % 2 ? 3 : 40000, r);
        group.allreduce(data.data(), data.size(), DType::kI64, ReduceOp::kSum);
        if (data.front() != expected || data.back() != expected) {
          *error = str_cat("round ", round, ": ", data.front(), " != ", expected);
          return;
        }
      }
    } catch (const std::exception& e) {
      *error = e.what();
    }
  };
  int64_t parity_sum = 0, halves_sum = 0;
  for (int w = 0; w < n; ++w) {
    if (w % 2 == r % 2) parity_sum += w;
    if ((w < n / 2) == (r < n / 2)) halves_sum += w;
  }
  std::string parity_error, halves_error;
  std::thread parity_thread([&] { run(*parity, parity_sum, &parity_error); });
  std::thread halves_thread([&] { run(*halves, halves_sum, &halves_error); });
  std::vector<std::vector<float>> buffers(8, std::vector<float>(30000, 1.0f));
  std::vector<std::shared_ptr<Work>> works;
  for (auto& buffer : buffers) {
    works.push_back(comm.allreduce_async(buffer.data(), buffer.size(), DType::kF32, ReduceOp::kSum));
  }
  try {
    for (auto& work : works) work->wait();
  } catch (const std::exception& e) {
    fail(r, str_cat("async allreduce: ", e.what()));
  }
  parity_thread.join();
  halves_thread.join();
  if (!parity_error.empty()) fail(r, "parity group: " + parity_error);
  if (!halves_error.empty()) fail(r, "halves group: " + halves_error);
  for (auto& buffer : buffers) {
    if (buffer.front() != static_cast<float>(n) || buffer.back() != static_cast<float>(n)) {
      fail(r, str_cat("async allreduce gave ", buffer.front()));
      break;
    }
  }
}

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
  check_every_op_and_dtype(*comm);
  check_mismatch(*comm);
  check_point_to_point(*comm);
  check_broadcast_every_root(*comm);
  check_split_messages(r);
  check_split_and_async(*comm);
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
