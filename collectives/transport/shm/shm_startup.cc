// Start-up of the shm transport (shm_transport.h): the job id, the segments' names, their
// creation, mapping and unlinking through the store. The transport itself is
// shm_transport.cc.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "collectives/transport/shm/shm_peer_memory.h"
#include "collectives/transport/shm/shm_segment.h"
#include "collectives/transport/shm/shm_transport.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string new_job_id() {
  std::random_device random;
  uint64_t bits = (uint64_t{random()} << 32) ^ random() ^ static_cast<uint64_t>(getpid());
  bits ^= static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(bits));
  return text;
}

std::string segment_name(const std::string& job, int rank) {
  return str_cat("/petaring-", job, "-", rank);
}

// Unlinks this rank's segment name when start-up ends, normally or by an exception.
struct UnlinkOnExit {
  std::string name;
  ~UnlinkOnExit() { shm::unlink_segment(name); }
};

// store.get with the start-up deadline, naming the rank whose key is missing.
std::string get_before(Store& store, const std::string& key, int waiting_for,
                       Clock::time_point deadline, const char* what) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  try {
    return store.get(key, std::max(left, milliseconds(1)));
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::kTimeout) throw;
    PR_FAIL(kTimeout, "shm transport start-up: rank ", waiting_for, " did not ", what,
            " in time (store key ", key, "); did every rank start, on this host?");
  }
}

// Whether every rank may read every other's memory (shm_peer_memory.h). Each rank probes
// each peer and publishes "ok" (all readable) or the first failure; every rank then reads
// every outcome, so all come to the same answer. Rank 0 logs why single copy is off.
// A rank whose options turn single copy off says so instead of probing, so that
// every rank still comes to the same answer (off).
bool agree_on_single_copy(Store& store, const std::vector<shm::Segment>& segments, int rank,
                          bool wanted, Clock::time_point deadline) {
  const int size = static_cast<int>(segments.size());
  std::string mine = wanted ? "" : str_cat("rank ", rank, " was started with single copy off");
  for (int p = 0; p < size && mine.empty(); ++p) {
    if (p == rank) continue;
    std::string why = shm::probe_peer(segments[p].owner_pid(), segments[p].probe_address());
    if (!why.empty()) mine = str_cat("rank ", rank, " cannot read rank ", p, "'s memory (", why, ")");
  }
  // A value is never empty in every store: "ok" marks success.
  store.set(str_cat("shm/single_copy/", rank), mine.empty() ? "ok" : mine);
  std::string first_failure;
  for (int p = 0; p < size; ++p) {
    std::string outcome =
        p == rank ? (mine.empty() ? "ok" : mine)
                  : get_before(store, str_cat("shm/single_copy/", p), p, deadline,
                               "report its single-copy probe");
    if (outcome != "ok" && first_failure.empty()) first_failure = outcome;
  }
  if (!first_failure.empty() && rank == 0 && wanted) {
    PR_LOG(kInfo) << "shm transport: single copy off, messages copy through the shared rings: "
                  << first_failure << "; cross-memory attach needs the ranks to be one user's "
                  << "processes allowed to trace each other (Yama ptrace_scope <= 1, or "
                  << "CAP_SYS_PTRACE in containers)";
  }
  return first_failure.empty();
}

}  // namespace

std::unique_ptr<Transport> make_shm_transport(Store& store, int rank, int size,
                                              const ShmTransportOptions& options) {
  PR_CHECK(size >= 1 && rank >= 0 && rank < size) << "rank " << rank << " of " << size;
  Clock::time_point deadline = Clock::now() + options.connect_timeout;
  std::string job;
  if (rank == 0) {
    job = new_job_id();
    store.set("shm/job", job);
  } else {
    job = get_before(store, "shm/job", 0, deadline, "publish the job id");
  }
  UnlinkOnExit own{segment_name(job, rank)};
  std::vector<shm::Segment> segments(size);
  segments[rank] = shm::Segment::create(own.name, size, options.ring_bytes);
  if (options.single_copy) segments[rank].set_probe_address(shm::prepare_probe());
  store.set(str_cat("shm/created/", rank), "1");
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    get_before(store, str_cat("shm/created/", p), p, deadline, "create its segment");
    segments[p] = shm::Segment::open(segment_name(job, p), size, options.ring_bytes);
  }
  store.set(str_cat("shm/mapped/", rank), "1");
  for (int p = 0; p < size; ++p) {
    if (p != rank) get_before(store, str_cat("shm/mapped/", p), p, deadline, "map the segments");
  }
  const bool single_copy =
      size > 1 && agree_on_single_copy(store, segments, rank, options.single_copy, deadline);
  return shm::make_transport_over(std::move(segments), rank, size, options, single_copy);
}

}  // namespace petaring
