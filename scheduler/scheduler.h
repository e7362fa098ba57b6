// The pool's gang scheduler: pure logic, no I/O, no threads, no clock of its own.
//
// The caller (the coordinator, a simulation, a test) feeds it events, each stamped with
// an explicit time `now` (milliseconds, never decreasing), and acts on the Decisions it
// returns. The same events in the same order give the same decisions, bit for bit.
//
// Contract of the two decisions:
//   kStart J P   the caller starts job J's ranks on placement P (rank r on P.ranks[r]).
//   kStop  J     the caller stops job J (after a checkpoint when checkpoint_first), then
//                calls job_stopped(J). Until then J keeps every GPU it still holds, so no
//                GPU is ever given to two jobs, even while old ranks are still exiting.
//
// Who decides what:
//   * Inventory events (add_node, remove_node, set_device_availability) and job events
//     (submit, cancel, job_stopped, job_finished, job_failed) change state and return
//     at most kStop decisions (a reclaimed or dead GPU under a job, a cancel).
//   * tick(now) runs one scheduling pass and returns the kStart decisions. Call it after
//     a batch of events, or periodically; between ticks nothing is placed.
//
// A coordinator's loop, in brief:
//   worker registers            act(s.add_node(info, now))
//   heartbeat lost              act(s.remove_node(node, now))     // kStop (kLost) for its jobs
//   `petaring worker reclaim`   act(s.set_node_availability(node, kReclaimed, now))
//   client submits / cancels    s.submit(spec, now) / act(s.cancel(job, now))
//   ranks exited after a kStop  s.job_stopped(job, now)           // re-queued or cancelled
//   job ends on its own         s.job_finished(job, now) / s.job_failed(job, now, why)
//   every second, or after a batch of the above: act(s.tick(now))  // kStart decisions
//   persist                     s.snapshot() -> SQLite rows; on restart Scheduler(state)
//
// Policy (details in docs/ARCHITECTURE.md, "scheduler/"):
//   * Gang placement: a job starts on all of its GPUs at once or not at all.
//   * Packing: a job that fits on one node goes to the node with the fewest free GPUs
//     that can take it (best fit); a larger job takes the nodes with the most free GPUs
//     first and finishes on the best-fitting node, so it spans few nodes and leaves
//     whole nodes whole. On a node, USB3 devices and the smallest memory that fits are
//     used first (PCIe devices stay free for tensor-parallel groups).
//   * Tensor-parallel groups (tp_size > 1): each group of tp_size ranks on one node, on
//     PCIe devices only.
//   * Order: priority (higher first), then fair share: tenants take turns, the one with
//     fewer GPU-seconds used going next (a job started in the same pass counts as its
//     GPUs x expected runtime), then submit time, then job id.
//   * Backfill (EASY): the first job that cannot start gets a reservation (the GPUs it
//     would get once enough running jobs end, by their expected runtimes); a later job
//     may start now only on GPUs outside that reservation, or inside it when its own
//     expected runtime ends before the reservation starts.
//   * Elastic jobs start on as many GPUs as fit, up to max_gpus (at least min_gpus);
//     after a reclaim they are re-placed and may shrink.
//   * Reclaim of a held GPU: kStop with checkpoint_first; after job_stopped() the job is
//     queued again (ahead of later submissions: it keeps its submit time).
//   * Loss (device dead, node removed): kStop without checkpoint; the job restarts from
//     its last checkpoint once re-placed. Lost GPUs leave the job at once.
//   * Ledger: held GPUs accrue GPU-ms and estimated FLOPs per job, tenant and node from
//     start until job_stopped/finished/failed, except after a loss (stops accruing at
//     the loss: that work is lost).
//
// Errors: events that make no sense (unknown job or node, duplicate id, job_stopped for
// a job that is not running, time going backwards) throw Error kFailedPrecondition or
// kNotFound; an invalid JobSpec throws kInvalidArgument naming the field. A job that
// needs more GPUs than the pool has is not an error: it waits, and describe_wait() says
// how many it needs and how many exist.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "scheduler/types.h"

namespace petaring::scheduler {

struct SchedulerOptions {
  bool backfill = true;  // false: strict order, nothing passes a waiting job
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options = {});
  // Rebuilds from a snapshot(); the options are not part of the state.
  explicit Scheduler(const SchedulerState& state, SchedulerOptions options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  Scheduler(Scheduler&&) noexcept;
  Scheduler& operator=(Scheduler&&) noexcept;

  // ---- inventory ----
  // Adds a node, or replaces the devices of a known node none of whose GPUs is held.
  std::vector<Decision> add_node(const NodeInfo& node, TimeMs now);
  // The node is gone (deregistered or lost): jobs on it get kStop (kLost).
  std::vector<Decision> remove_node(NodeId node, TimeMs now);
  // An owner lends (kLent) or reclaims (kReclaimed) a device, or it died (kDead).
  std::vector<Decision> set_device_availability(NodeId node, int device, Availability availability,
                                                TimeMs now);
  // Every device of the node at once (a worker's `reclaim`, a lost heartbeat).
  std::vector<Decision> set_node_availability(NodeId node, Availability availability, TimeMs now);

  // ---- jobs ----
  std::vector<Decision> submit(const JobSpec& spec, TimeMs now);
  // Queued: ends at once. Running: kStop (kCancelled); ends at job_stopped().
  std::vector<Decision> cancel(JobId job, TimeMs now);
  // Every rank of a running or stopping job has exited after a kStop (or on its own,
  // e.g. a peer failed): re-queued, or cancelled if a cancel asked for the stop.
  std::vector<Decision> job_stopped(JobId job, TimeMs now);
  std::vector<Decision> job_finished(JobId job, TimeMs now);
  // The job's own fault (bad recipe, diverged): terminal, not retried.
  std::vector<Decision> job_failed(JobId job, TimeMs now, const std::string& reason);

  // ---- scheduling ----
  // Advances the clock and places what can start. Returns kStart decisions.
  std::vector<Decision> tick(TimeMs now);

  // ---- queries (as of the last event) ----
  TimeMs now() const;
  const JobRecord& job(JobId job) const;  // throws kNotFound
  bool has_job(JobId job) const;
  std::vector<JobId> jobs_in_state(JobState state) const;  // ascending ids
  const NodeInfo& node(NodeId node) const;                 // throws kNotFound
  // Which job holds (node, device) now; 0 = none.
  JobId holder(NodeId node, int device) const;
  // One sentence: "waiting: needs 16 GPUs with >= 24 GiB; the pool has 12 such GPUs".
  std::string describe_wait(JobId job) const;
  // Usage settled up to now() (call tick(now) first for an up-to-date ledger).
  Ledger ledger() const;
  struct PoolCounts {
    int nodes = 0, devices = 0, lent = 0, reclaimed = 0, dead = 0, free = 0;
  };
  PoolCounts pool() const;

  SchedulerState snapshot() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace petaring::scheduler
