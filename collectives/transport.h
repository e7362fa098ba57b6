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

// Single-copy access to the memory of the other ranks of a transport's group, for the
// direct collectives (direct.h): a rank reads its peers' buffers and writes their results
// straight into their receive buffers, one copy per byte instead of a copy into a message
// and another out of it. Ranks that are threads of one process share an address space
// (local transport); processes on one host use cross-memory attach (shm transport:
// process_vm_readv / process_vm_writev). Addresses are the peer's own, as it passed them
// to the collective and sent them to this rank. Safe from several threads at once.
class PeerMemory {
 public:
  virtual ~PeerMemory() = default;
  // Whether `peer` (a rank of the transport's group, not this one) can be reached.
  virtual bool reaches(int peer) const = 0;
  // Copies `bytes` from address `remote` of `peer` into `local` / from `local` to `remote`.
  // Throws kDisconnected naming the peer when its process is gone, kFailedPrecondition
  // when the range is not mapped in the peer (the ranks disagree on a buffer), the system
  // refuses the access, or the peer has aborted (its transport's abort() closes its memory
  // to peers and waits out their copies under way: transport/peer_gate.h).
  virtual void read(int peer, uint64_t remote, void* local, size_t bytes) = 0;
  virtual void write(int peer, const void* local, uint64_t remote, size_t bytes) = 0;
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
  // Access to peers' memory (see PeerMemory), or null when this transport has none (tcp,
  // mpi; shm when the system refuses cross-memory attach, or it was turned off). A
  // composite transport reaches only the peers of its parts that have it; direct.h's
  // peer_memory_of_all() says whether it reaches every peer, which is the same answer on
  // every rank of a group. Valid as long as the transport.
  virtual PeerMemory* peer_memory() { return nullptr; }
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

// This machine's host name (gethostname), "unknown-host" when it cannot be read: how errors
// and the host exchange name a host.
std::string local_host_name();

}  // namespace petaring
