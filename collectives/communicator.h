// The collectives layer, read this first.
//   ReduceOp       how values combine (reduce.h: sum, average, max, min; per-dtype rules)
//   Communicator   a group of ranks: rank(), size(), the collectives, send/recv
// make_world_communicator() (bootstrap.h) picks the transport: MPI under mpirun, or a
// single-rank group when the process runs alone. Algorithms, one per file: ring.h
// (allreduce), reduce_scatter.h, allgather.h, broadcast.h, barrier.h; signature.h checks
// that ranks agree on each call; transports: transport/local, transport/mpi.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct CollectiveSignature;

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

  // Collectives. All are blocking, over host memory, and every rank of the group must make
  // the same calls in the same order with the same counts, dtypes, ops and roots; ranks
  // that disagree all get kFailedPrecondition naming two of them and their calls
  // (signature.h), never a hang. Reductions take f32, bf16, f16 (f32 arithmetic, rounded
  // back at every combine), i32 and i64 (exact; average is kInvalidArgument): reduce.h.
  // Results are bit-identical on every rank (ring.h documents the order of combination).

  // In place: data holds count values of dtype; afterwards the reduction over all ranks.
  void allreduce(void* data, size_t count, DType dtype, ReduceOp op);
  // Out of place: recv = reduction of every rank's send (count values each). send == recv
  // is the in-place call; other overlaps are not allowed. send is only read.
  void allreduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op);
  // send holds size() * recv_count values; rank r receives block r (values
  // [r * recv_count, (r + 1) * recv_count)) reduced over all ranks. recv must not overlap send.
  void reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype, ReduceOp op);
  // recv receives size() * send_count values, block b being rank b's send. send may be
  // recv + rank() * send_count (in place); no other overlap.
  void allgather(const void* send, void* recv, size_t send_count, DType dtype);
  // Copies `bytes` from `root` to every rank, in place.
  void broadcast(void* data, size_t bytes, int root);
  void barrier();

  // Point to point, outside the collectives' sequence. Blocking: send returns when `data`
  // may be reused (it may wait for the peer's recv), recv when the bytes have arrived. The
  // k-th send from a to b pairs with the k-th recv on b from a (each ordered pair counts
  // its own calls, carried in the tag); both must name the same byte count. Errors
  // (timeout, size mismatch, dead peer) name the peer and the call's number.
  void send(const void* data, size_t bytes, int peer);
  void recv(void* data, size_t bytes, int peer);

  // Every collective call takes the next sequence number as its tag, so calls never mix
  // messages. How long any wait may go without progress before it throws kTimeout
  // (naming the peer).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The signature check (on by default) costs ceil(log2 size()) small messages per call;
  // turning it off is for measuring that cost. Every rank must use the same setting.
  void set_check_signatures(bool check) { check_signatures_ = check; }

 private:
  // Takes the next sequence number and, when enabled, checks `signature` (whose sequence
  // it fills in) against every rank's. Returns the call's tag.
  uint64_t begin_collective(CollectiveSignature signature);
  void check_peer(int peer, const char* what) const;

  std::unique_ptr<Transport> transport_;
  std::chrono::milliseconds timeout_{std::chrono::minutes(5)};
  uint64_t sequence_ = 0;  // one per collective call, the same on every rank
  bool check_signatures_ = true;
  std::vector<uint64_t> sends_to_;      // point-to-point calls per peer
  std::vector<uint64_t> receives_from_;
};

}  // namespace petaring
