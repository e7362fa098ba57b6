#include "collectives/transport/shm/shm_peer_memory.h"

#include <limits.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::shm {
namespace {

// Copies up to `bytes`; returns how many moved, or -1 with errno set.
ssize_t copy_once(pid_t pid, uint64_t remote, void* local, size_t bytes, bool write) {
  iovec local_range{local, bytes};
  iovec remote_range{reinterpret_cast<void*>(remote), bytes};
  return write ? process_vm_writev(pid, &local_range, 1, &remote_range, 1, 0)
               : process_vm_readv(pid, &local_range, 1, &remote_range, 1, 0);
}

}  // namespace

uint64_t prepare_probe() {
  static const uint64_t word = probe_value(getpid());
  std::ifstream scope_file("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  if (scope_file >> scope && scope == 1) {
    // Yama's "restricted" mode: only ancestors may attach unless a tracer is declared.
    // Failure leaves the probe to find out (and single copy off).
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  }
  return reinterpret_cast<uint64_t>(&word);
}

std::string probe_peer(int64_t pid, uint64_t address) {
  uint64_t value = 0;
  ssize_t got = copy_once(static_cast<pid_t>(pid), address, &value, sizeof(value), false);
  if (got < 0) return str_cat("process_vm_readv: ", std::strerror(errno));
  if (got != static_cast<ssize_t>(sizeof(value))) return str_cat("process_vm_readv read ", got, " bytes");
  if (value != probe_value(pid)) return "process_vm_readv read the wrong value";
  return "";
}

bool CmaPeerMemory::reaches(int peer) const {
  return peer >= 0 && peer < static_cast<int>(pids_.size()) && peer != rank_;
}

void CmaPeerMemory::read(int peer, uint64_t remote, void* local, size_t bytes) {
  PR_CHECK(reaches(peer)) << "rank " << rank_ << " has no peer " << peer;
  copy_through_gate(*gates_[static_cast<size_t>(peer)], rank_, peer,
                    [&] { transfer(peer, remote, local, bytes, false); });
}

void CmaPeerMemory::write(int peer, const void* local, uint64_t remote, size_t bytes) {
  PR_CHECK(reaches(peer)) << "rank " << rank_ << " has no peer " << peer;
  copy_through_gate(*gates_[static_cast<size_t>(peer)], rank_, peer,
                    [&] { transfer(peer, remote, const_cast<void*>(local), bytes, true); });
}

void CmaPeerMemory::transfer(int peer, uint64_t remote, void* local, size_t bytes, bool write) {
  PR_CHECK(reaches(peer)) << "rank " << rank_ << " has no peer " << peer;
  const pid_t pid = static_cast<pid_t>(pids_[static_cast<size_t>(peer)]);
  char* cursor = static_cast<char*>(local);
  while (bytes > 0) {
    // The calls may stop short (at a page the kernel could not pin); go on from there.
    ssize_t moved = copy_once(pid, remote, cursor, bytes, write);
    if (moved > 0) {
      cursor += moved;
      remote += static_cast<uint64_t>(moved);
      bytes -= static_cast<size_t>(moved);
      continue;
    }
    const int code = moved < 0 ? errno : EFAULT;
    if (code == EINTR) continue;
    const std::string what = str_cat("rank ", rank_, ": ", write ? "writing " : "reading ", bytes,
                                     " bytes ", write ? "to" : "from", " rank ", peer, " (pid ",
                                     pid, " on host ", local_host_name(), ") at 0x", std::hex, remote,
                                     std::dec, " failed: ", std::strerror(code));
    if (code == ESRCH) {
      PR_FAIL(kDisconnected, what, "; the process of rank ", peer,
              " has exited: see that rank's log for why (shm transport, single copy)");
    }
    if (code == EFAULT) {
      PR_FAIL(kFailedPrecondition, what, "; the range is not readable and writable memory of ",
              "that process: either the ranks pass buffers of different sizes, or the buffer ",
              "is memory mapped from a device, which cross-memory attach cannot reach (set ",
              "PETARING_SINGLE_COPY=0 for such buffers) (shm transport, single copy)");
    }
    PR_FAIL(kFailedPrecondition, what, "; the system refused cross-memory attach after the ",
            "start-up probe allowed it; set PETARING_SINGLE_COPY=0 to copy through the ",
            "shared rings instead (shm transport)");
  }
}

}  // namespace petaring::shm
