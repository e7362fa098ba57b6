// Cross-memory attach for the shm transport (internal to it): PeerMemory (transport.h)
// over process_vm_readv / process_vm_writev, which copy between two processes' private
// memory in one pass, inside the kernel, with no shared buffer in between.
//
// Whether it may be used is decided once, at start-up (shm_startup.cc), the same way on
// every rank: each rank publishes in its segment header the address of a word holding
// probe_value(its pid); every rank reads every peer's word with process_vm_readv and
// publishes the outcome in the store; single copy is on only when every rank read every
// peer's word correctly. Reasons it may be refused: the Yama LSM with ptrace_scope >= 2,
// containers whose seccomp profile forbids the calls, processes of different users. With
// ptrace_scope = 1 (peers are not each other's ancestors) each rank declares every process
// of its user a permitted tracer (prctl PR_SET_PTRACER), as Open MPI's shared-memory
// transport does for the same calls.
//
// Buffers: cross-memory attach reaches ordinary (pageable) memory of the peer; memory
// mapped from a device (VM_IO / VM_PFNMAP mappings, e.g. a GPU aperture) is refused with
// EFAULT, reported as kFailedPrecondition saying so. Collectives over such buffers need
// PETARING_SINGLE_COPY=0 (the ring copies through the shared rings instead).
//
// Lifetime: a pid could in principle name a new process once the peer's has exited and
// been reaped. Linux hands out pids in increasing order and wraps only at pid_max
// (4,194,304 by default on 64-bit systems), so that takes the whole range being used up
// in between; a transfer that fails with ESRCH is reported, never retried.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives/transport.h"
#include "collectives/transport/peer_gate.h"

namespace petaring::shm {

// What a rank keeps at its probe address.
inline uint64_t probe_value(int64_t pid) {
  return 0x7065'6572'0000'0000ULL ^ static_cast<uint64_t>(pid);  // "peer" ^ pid
}

// The address of this process's probe word (holding probe_value(getpid())), after making
// sure that peers are allowed to read it where Yama asks for a declared tracer.
uint64_t prepare_probe();

// Reads the probe word at `address` in process `pid`: "" when it holds probe_value(pid),
// else why not (for the log), e.g. "process_vm_readv: Operation not permitted".
std::string probe_peer(int64_t pid, uint64_t address);

// PeerMemory over the pids of a group's ranks and the gates in their segment headers
// (index: rank). Every copy passes the target's gate (peer_gate.h); close() closes this
// rank's own, for Transport::abort.
class CmaPeerMemory : public PeerMemory {
 public:
  CmaPeerMemory(int rank, std::vector<int64_t> pids, std::vector<PeerGate*> gates)
      : rank_(rank), pids_(std::move(pids)), gates_(std::move(gates)) {}
  bool reaches(int peer) const override;
  void read(int peer, uint64_t remote, void* local, size_t bytes) override;
  void write(int peer, const void* local, uint64_t remote, size_t bytes) override;
  void close() { close_gate(*gates_[static_cast<size_t>(rank_)]); }

 private:
  void transfer(int peer, uint64_t remote, void* local, size_t bytes, bool write);

  int rank_;
  std::vector<int64_t> pids_;
  std::vector<PeerGate*> gates_;
};

}  // namespace petaring::shm
