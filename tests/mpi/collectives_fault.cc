// Fault driver for tests/mpi/collectives_fault.sh, run under `petaring launch -n N`:
//   collectives_fault loop       allreduce forever (an asynchronous 1 Mi-float allreduce
//                                 and a blocking 8-float one per iteration); rank 0 prints
//                                 "READY" after the first iteration
//   collectives_fault mismatch   one allreduce where the last rank passes another count
// SIGTERM is ignored, so that when the launcher stops the ranks after a failure each
// survivor reports the error its own collective saw. On an error a rank prints
// "rank R FAILED after S s: <message>" to stderr and exits 1.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "collectives/bootstrap.h"
#include "collectives/communicator.h"
#include "runtime/error.h"

int main(int argc, char** argv) {
  using namespace petaring;
  using Clock = std::chrono::steady_clock;
  if (argc != 2 || (std::strcmp(argv[1], "loop") != 0 && std::strcmp(argv[1], "mismatch") != 0)) {
    std::fprintf(stderr, "usage: collectives_fault loop|mismatch (under petaring launch)\n");
    return 2;
  }
  ::signal(SIGTERM, SIG_IGN);
  std::unique_ptr<Communicator> comm = make_world_communicator(nullptr);
  const int rank = comm->rank(), size = comm->size();
  Clock::time_point failing_since = Clock::now();
  try {
    if (std::strcmp(argv[1], "mismatch") == 0) {
      std::vector<float> data(16, 1.0f);
      comm->allreduce(data.data(), rank == size - 1 ? 11 : 10, DType::kF32, ReduceOp::kSum);
      std::fprintf(stderr, "rank %d: the mismatched allreduce returned\n", rank);
      return 0;
    }
    std::vector<float> large(1 << 20, 1.0f);
    std::vector<float> small(8, 1.0f);
    for (long iteration = 0;; ++iteration) {
      failing_since = Clock::now();
      auto work = comm->allreduce_async(large.data(), large.size(), DType::kF32, ReduceOp::kAverage);
      comm->allreduce(small.data(), small.size(), DType::kF32, ReduceOp::kAverage);
      failing_since = Clock::now();
      work->wait();
      if (iteration == 0 && rank == 0) {
        std::fprintf(stderr, "READY\n");
        std::fflush(stderr);
      }
    }
  } catch (const std::exception& error) {
    double seconds = std::chrono::duration<double>(Clock::now() - failing_since).count();
    std::fprintf(stderr, "rank %d FAILED after %.1f s: %s\n", rank, seconds, error.what());
    return 1;
  }
}
