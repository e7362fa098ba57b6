// Transport: tagged point-to-point byte messages among the ranks of one group. The
// collective algorithms (ring.h, ...) are written against this interface only, so that
// every algorithm runs over every transport (in-process, MPI today).
//
// Contract: messages between one (sender, receiver, tag) triple arrive in send order; a
// receive must name the exact size of the matching send. isend/irecv return at once; the
// buffers must stay valid and untouched until the request completes. Destroying a request
// that has not completed withdraws it where the transport can (receives stop writing into
// their buffer). Requests must not outlive their transport. Tags below 2^32 are the
// caller's; split() uses the bits above.
//
// Threads: every member and every request may be used from several threads at once (the
// communicators of sub-groups share their parent's transport, each from its own thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/reduce.h"
#include "runtime/dtype.h"

namespace petaring {

class Request {
 public:
  virtual ~Request() = default;
  // Blocks until done. Throws kTimeout (naming the peer) when no progress for `timeout`,
  // kDisconnected when the peer is gone.
  virtual void wait(std::chrono::milliseconds timeout) = 0;
  virtual bool test() = 0;  // non-blocking: true when done
};

class Transport {
 public:
  Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "mpi", "local"
  // The smallest ring segment (ring.h) worth a message of its own here, in bytes; 0: no
  // preference. A transport with a high cost per message (tcp: system calls and a frame
  // per message) asks for larger segments than the ring would otherwise cut.
  virtual size_t min_segment_bytes() const { return 0; }
  virtual std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                         uint64_t tag) = 0;
  virtual std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) = 0;
  // A receive whose bytes are combined into `data` instead of overwriting it: data =
  // data (op) received, element-wise over bytes / dtype_size(dtype) values of `dtype`,
  // rounding as reduce.h's reduce_into does. The default receives into a buffer of its
  // own and combines when the request completes; a transport that combines the bytes as
  // they arrive (no copy in between) says so with reduces_on_receive().
  virtual std::unique_ptr<Request> irecv_reduce(int peer, void* data, size_t bytes, uint64_t tag,
                                                DType dtype, ReduceOp op);
  virtual bool reduces_on_receive() const { return false; }
  // Makes every wait and test, pending or later, on any request of this transport throw
  // kFailedPrecondition (naming the rank and "aborted") instead of blocking. Irreversible.
  // Unlike the other members it may be called from any thread, at any time.
  virtual void abort() = 0;

  // The transport of a sub-group (Communicator::split): `members` lists the ranks of this
  // group that form it, in sub-group rank order (empty: this rank is in no sub-group, and
  // the call returns null). Collective over this transport's group: every rank calls it,
  // in the same order, with its own members, `color` (negative when not in any) and `key`;
  // `group_id` (non-zero, the same on every member) keeps the sub-group's messages apart
  // from this group's and from other sub-groups'. The default shares this transport
  // (sub_transport.h); this transport must outlive the result.
  virtual std::unique_ptr<Transport> split(const std::vector<int>& members, uint64_t group_id,
                                           int color, int key);
};

// The message every transport's requests throw once abort() was called.
std::string transport_aborted_message(int rank, int peer, const char* transport_name);

}  // namespace petaring
