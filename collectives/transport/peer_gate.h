// The gate each rank keeps on its own memory for peers that copy into and out of it
// (PeerMemory, transport.h). Internal to the transports that offer peer memory.
//
// A rank that aborts (Transport::abort) may leave a direct collective (direct.h) while its
// peers are still copying into or out of its buffers, and then free them. So every copy a
// peer makes passes the owner's gate: it counts itself in `accessing`, then checks
// `closed`; aborting closes the gate and waits until `accessing` is 0. Both sides use
// sequentially consistent operations, so either the copy sees the gate closed (and does
// not start), or the owner sees the copy counted (and waits for it). Copies take
// microseconds; the wait is bounded in case a peer died in the middle of one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "runtime/error.h"

namespace petaring {

// Lives where the owner's peers can reach it: the shm segment header, or the memory of the
// process whose threads are the ranks.
struct PeerGate {
  std::atomic<uint32_t> closed{0};
  std::atomic<uint32_t> accessing{0};
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "peer gates need lock-free atomics");

// Runs copy() through `gate` (that of rank `owner`, copied by rank `rank`); throws
// kFailedPrecondition without copying when the owner has aborted.
template <typename Copy>
void copy_through_gate(PeerGate& gate, int rank, int owner, Copy&& copy) {
  gate.accessing.fetch_add(1, std::memory_order_seq_cst);
  struct Leave {
    PeerGate& gate;
    ~Leave() { gate.accessing.fetch_sub(1, std::memory_order_seq_cst); }
  } leave{gate};
  if (gate.closed.load(std::memory_order_seq_cst) != 0) {
    PR_FAIL(kFailedPrecondition, "rank ", rank, ": rank ", owner, " has aborted its ",
            "collectives, so its memory is no longer open to its peers; look for the error ",
            "that made rank ", owner, " abort");
  }
  copy();
}

// Closes the gate of this rank's memory and waits, at most `at_most`, for peers' copies
// already under way.
inline void close_gate(PeerGate& gate, std::chrono::milliseconds at_most = std::chrono::seconds(1)) {
  gate.closed.store(1, std::memory_order_seq_cst);
  const auto deadline = std::chrono::steady_clock::now() + at_most;
  while (gate.accessing.load(std::memory_order_seq_cst) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
}

}  // namespace petaring
