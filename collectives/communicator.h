// The collectives layer, read this first.
//   ReduceOp       how values combine
//   Communicator   a group of ranks: rank(), size(), and the collectives
// make_world_communicator() (bootstrap.h) picks the transport: MPI under mpirun, or a
// single-rank group when the process runs alone. Algorithms: ring.h (allreduce),
// broadcast.h, barrier.h; transports: transport/local, transport/mpi.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

enum class ReduceOp { kSum, kAverage };

class Communicator {
 public:
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  // The communicator owns its transport.
  explicit Communicator(std::unique_ptr<Transport> transport);
  ~Communicator();

  int rank() const { return transport_->rank(); }
  int size() const { return transport_->size(); }
  Transport& transport() { return *transport_; }

  // In place over host memory; blocking; every rank must call it with the same count,
  // dtype and op. Ring algorithm (collectives/ring.h); the result is bit-identical on
  // every rank. f32 only for now (others throw kUnimplemented).
  void allreduce(void* data, size_t count, DType dtype, ReduceOp op);
  // Copies `bytes` from `root` to every rank, in place; blocking.
  void broadcast(void* data, size_t bytes, int root);
  void barrier();

  // Every collective call takes the next tag, so calls never mix messages; all ranks must
  // make the same calls in the same order.
  // How long any wait may go without progress before it throws kTimeout (naming the peer).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  uint64_t next_tag();

  std::unique_ptr<Transport> transport_;
  std::chrono::milliseconds timeout_{std::chrono::minutes(5)};
  uint64_t sequence_ = 0;  // one per collective call, the same on every rank
};

}  // namespace petaring
