// The collectives layer, read this first.
//   ReduceOp       how values combine
//   Communicator   a group of ranks: rank(), size(), and the collectives
// make_communicator() (bootstrap.h) picks the transport: MPI under mpirun, or a
// single-rank group when the process runs alone.
#pragma once

#include <chrono>
#include <cstddef>
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
  // dtype and op. Ring algorithm (collectives/ring.h). f32 only for now.
  void allreduce(void* data, size_t count, DType dtype, ReduceOp op);
  // Copies `bytes` from `root` to every rank, in place; blocking.
  void broadcast(void* data, size_t bytes, int root);
  void barrier();

  // How long any wait may go without progress before it throws kTimeout.
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  uint64_t next_tag();

  std::unique_ptr<Transport> transport_;
  std::chrono::milliseconds timeout_{std::chrono::minutes(5)};
  uint64_t sequence_ = 0;  // one per collective call, the same on every rank
};

}  // namespace petaring
