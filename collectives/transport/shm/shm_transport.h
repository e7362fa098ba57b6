// Shared-memory transport for ranks on one host: no sockets on the data path.
//
// Start-up (through a Store, like the TCP transport): rank 0 draws a job id and publishes
// it under "shm/job"; each rank creates the segment "/petaring-<job>-<rank>" (shm_segment.h)
// holding one ring per source rank, maps every other rank's segment, and once every rank
// has mapped every segment each rank unlinks its own name, so nothing stays in /dev/shm
// after start-up, even when a rank later crashes. A rank that fails during start-up unlinks
// its own name on the way out.
//
// Wire: per ordered pair (source, destination) one single-producer single-consumer ring of
// ring_bytes in the destination's segment. A message is [u64 tag][u64 bytes][payload],
// streamed through the ring in whatever pieces fit, so messages of any size pass. Sends go
// out in isend order per peer. Progress is made by test() and wait() on any request of the
// transport: each call pushes every pending send and drains every incoming ring; a message
// whose receive is not yet posted is buffered until it is. So a ring step's send and
// receive progress together even when both sides send large messages at once.
//
// Waiting spins for spin_polls polls, then yields the core between polls for yield_window
// without progress (a sleeping peer would stall a streaming sender, see mpi_transport.h),
// then sleeps on a futex: each rank's segment header holds a doorbell word that every
// rank moving bytes into or out of one of its rings bumps (a FUTEX_WAKE only when the
// owner counts a sleeper), so a sleeping rank wakes as soon as its peer writes or frees
// room, and otherwise after max_sleep (for the timeout and liveness checks).
//
// Single copy: when the system lets the ranks read and write each other's memory
// (process_vm_readv / process_vm_writev; probed at start-up, the same answer on every
// rank: shm_peer_memory.h), peer_memory() offers it and the communicator runs the direct
// collectives (direct.h), which copy each byte once instead of through the rings.
//
// Errors: a wait with no bytes moving to or from its peer for its timeout throws kTimeout
// naming the peer. While waiting, peers' pids (from their segment headers) are checked with
// kill(pid, 0) every 100 ms; a peer whose process is gone turns a wait that can no longer
// complete into kDisconnected naming its rank (bytes it wrote before dying are still
// delivered). A receive whose size differs from the matching send gets kFailedPrecondition.
// Destroying an incomplete receive withdraws it (its message is dropped when it arrives);
// destroying an incomplete send copies its unsent bytes, so the message still goes out.
//
// Threads: any threads (one mutex per transport guards its queues; whichever thread polls
// makes progress for all). Several transports in one process (ranks as threads) work.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "collectives/store/store.h"
#include "collectives/transport.h"

namespace petaring {

struct ShmTransportOptions {
  size_t ring_bytes = size_t{1} << 20;  // per ordered pair; a multiple of 64
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(120)};  // whole start-up
  int spin_polls = 1000;
  std::chrono::milliseconds yield_window{50};
  std::chrono::microseconds max_sleep{200};  // longest futex sleep between checks
  // Offer PeerMemory (cross-memory attach, shm_peer_memory.h) when every rank may read
  // every other's memory, for the direct collectives (direct.h). When any rank passes
  // false, no rank offers it.
  bool single_copy = true;
};

// Joins rank `rank` of `size` (all on this host) through `store` (used during this call
// only; every rank must use the same store, a fresh key space and the same options).
// Throws kTimeout naming the missing rank when a peer does not show up within
// connect_timeout, kFailedPrecondition when /dev/shm cannot be used.
std::unique_ptr<Transport> make_shm_transport(Store& store, int rank, int size,
                                              const ShmTransportOptions& options = {});

}  // namespace petaring
