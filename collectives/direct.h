// Direct (single-copy) allreduce, reduce_scatter and allgather, for groups whose ranks can
// read and write each other's memory (Transport::peer_memory: ranks as threads of one
// process, or processes of one host with cross-memory attach). The ring (ring.h) moves
// every byte through messages: a copy into the transport and a copy out on every hop. Here
// a rank reads its peers' buffers where they are and writes results straight into their
// receive buffers, so each byte is copied once per reader; messages carry only addresses
// and completion.
//
// Terms (direct.cc uses these words for its variables):
//   n, r     world size and this rank.
//   block    the buffer is cut into n blocks exactly as the ring cuts its chunks
//            (ring_chunk, ring.h); rank r owns block r. For reduce_scatter block b is
//            rank b's result (send values [b * recv_count, (b + 1) * recv_count)); for
//            allgather it is rank b's send.
//   piece    the part of a block handled at once, at most piece_bytes: small enough that
//            its working buffers stay in the core's cache between the read, the combine
//            and the writes.
//   address record  what a rank tells every peer at the start of a call: the addresses
//            of its send and receive buffers (its own virtual addresses) and the call's
//            size in bytes; ranks whose sizes differ fail before any copy, also with the
//            signature check off.
//   status   what a rank tells every peer at the end: done (it finished reading their
//            buffers and writing its results into them), or its error's kind and text.
//
// Protocol, every rank, every call:
//   1. post the receive of every peer's address record and send its own (the signature
//      check, before_first_wait, runs while they travel);
//   2. allreduce: for each piece of block r, read the piece of every peer's send in ring
//      order and combine (below), then write the result into every peer's receive buffer;
//      reduce_scatter: the same without the writes; allgather: write its send into block
//      r of every peer's receive buffer;
//   3. send its status to every peer and wait for every peer's. A rank returns only once
//      every peer has said it is done with this rank's buffers, so no peer touches them
//      after the call returns, also when the call fails (the failing rank still sends
//      its error and waits, up to the timeout, before it throws).
// Cost per rank: 2 (n - 1) small messages and, for allreduce, (n - 1) / n of the buffer
// read from peers and (n - 1) / n written to them, in 2 (n - 1) system calls per piece
// (shm) - against the ring's 2 (n - 1) messages, each copied in and out.
//
// Determinism: element i of block c is combined in the ring's order, with the ring's
// operands: acc = x[c+1]; acc = x[c+2] (op) acc; ...; acc = x[c] (op) acc (ranks mod n),
// rounding at every combine as reduce.h says, then / n once for kAverage. So the direct
// and the ring allreduce (and reduce_scatter) give the same bytes, bit for bit, on every
// rank.
//
// Errors: a peer whose process has gone is kDisconnected naming it (from the transport's
// waits or from PeerMemory); a peer that reports a failure gives its error, of its kind,
// prefixed with this rank and that peer (so a rank dead in the middle of a call is named
// by every survivor, also by those that learn of it from another peer); waits are bounded
// by `timeout` without progress (kTimeout naming the peer).
//
// abort(): a rank whose communicator is aborted stops copying before its next piece
// (DirectOptions::aborted) and fails its final exchange at once. Its peers' copies into
// and out of its memory pass its gate (transport/peer_gate.h), which the transport's
// abort() closes, waiting out the copies already under way: once abort() has returned no
// peer touches the rank's buffers, which may then go; the peers' next copy fails, naming
// the aborted rank.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct DirectOptions {
  // Largest piece in bytes (0: kDefaultDirectPieceBytes); a multiple of the element size
  // is taken (at least one element).
  size_t piece_bytes = 0;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Every message of this call carries this tag; callers take one per collective call.
  uint64_t tag = 0;
  // When set, called once, after the address records are posted and before anything is
  // waited for (the communicator's signature check), as in ring.h.
  std::function<void()> before_first_wait;
  // When set, the copies stop between pieces once it is true (Communicator::abort, whose
  // transport then fails the final exchange at once): the call throws kFailedPrecondition.
  const std::atomic<bool>* aborted = nullptr;
};

// TODO(perf): measured on a 2-core host only (docs/benchmarks.md).
inline constexpr size_t kDefaultDirectPieceBytes = 256 * 1024;

// The transport's peer memory when it reaches every peer of the group (the same answer on
// every rank), else null.
PeerMemory* peer_memory_of_all(Transport& transport);

// The calls below take the arguments of ring_allreduce, ring_reduce_scatter and
// ring_allgather (the same buffer rules, validation, and behaviour for count 0 and world
// size 1) and need peer_memory_of_all(transport) (kFailedPrecondition otherwise).
void direct_allreduce(Transport& transport, const void* send, void* recv, size_t count,
                      DType dtype, ReduceOp op, const DirectOptions& options);
void direct_reduce_scatter(Transport& transport, const void* send, void* recv,
                           size_t recv_count, DType dtype, ReduceOp op,
                           const DirectOptions& options);
void direct_allgather(Transport& transport, const void* send, void* recv, size_t send_count,
                      DType dtype, const DirectOptions& options);

// The host-local phases of the hierarchical allreduce (hierarchical.h) with single copy, in
// place over `data` (count values of `dtype`) on the ranks of one host (`local`): rank r
// combines block r of every local rank's data into its own with `op` (in the ring's
// order), hands the block to `between` (the step across hosts, which may rewrite it in
// place; it gets the block's first value and its count, 0 for an empty block), then
// writes the block into every local peer's data. Between the reads and the writes this
// rank touches no peer's memory, so `between` may take as long as it needs.
void direct_local_allreduce(Transport& local, void* data, size_t count, DType dtype,
                            ReduceOp op, const DirectOptions& options,
                            const std::function<void(char* block, size_t count)>& between);

}  // namespace petaring
