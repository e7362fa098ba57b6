// Coordinator: the pool's one server. Owns the durable state (state.h), serves workers,
// clients and ranks over authenticated frames (server.h), watches heartbeats, and leaves
// every placement and queue decision to scheduler::Scheduler (scheduler/scheduler.h):
// gang placement, priorities, fair share, backfill, elastic jobs, the ledger's FLOPs.
//
// Job life: submit -> queued -> (placed: attempt n, running) -> finished | failed |
// cancelled. An attempt ends early when a rank exits non-zero, a node of the attempt
// stops heartbeating for `heartbeat_timeout`, its owner reclaims it, or a client cancels
// it: the surviving ranks are told to stop and the job is "stopping", still holding its
// GPUs, until every rank has exited (its worker reports it) or is gone (its node was
// declared dead); only then do the GPUs go back to the scheduler, GPU-seconds to the
// ledger, and the job is queued again (the next attempt resumes from the job's
// checkpoint) until `max_attempts` attempts have failed (a rank's error exit, a lost
// node; not a reclaim, a cancel, or a rank preempted with exit 75 after its checkpoint),
// or ends if cancelled. The stopping state
// is persisted, so a restarted coordinator keeps holding the GPUs and re-sends the stops.
// A job that needs more GPUs than the pool has waits with the scheduler's reason, saying
// both numbers. After a restart the scheduler is rebuilt from the state file.
// Ranks of a running attempt meet through a key-value table the coordinator serves for
// that attempt only, authenticating with the attempt's token (rank_store.h).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cluster/server.h"

namespace petaring::cluster {

struct CoordinatorOptions {
  std::string listen = "127.0.0.1:7070";
  std::string state_path;  // SQLite file
  std::string secret;      // the pool secret
  std::chrono::milliseconds heartbeat_timeout{10000};
  uint32_t max_attempts = 4;  // failed attempts before a job fails (JobRow::failures)
  // Checkpoints. A job's checkpoints must outlive the host that wrote them, so that an
  // attempt re-placed elsewhere resumes (as with torchrun --max-restarts or Horovod
  // elastic, they go to a filesystem every node shares). Each attempt is handed its job's
  // folder: the recipe's checkpoint.dir when it is an absolute path (the job owner's
  // shared folder), else SHARED_DIR/job-ID/checkpoints when `shared_dir` (an absolute
  // path, the same on every worker's host: an NFS mount, say) is set, else none: the
  // worker's own WORKDIR/job-ID/checkpoints, which only a re-placement on the same host
  // (or workers sharing one --workdir) finds again.
  std::string shared_dir;
};

class Coordinator {
 public:
  // Opens the state (re-attaching running jobs), starts serving and watching heartbeats.
  explicit Coordinator(CoordinatorOptions options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  std::string address() const;
  int64_t rejected_connections() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace petaring::cluster
