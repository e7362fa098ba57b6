// Rebuilding the coordinator from its SQLite state file (state.h) after a start or a
// kill -9: nodes, jobs with their running or stopping attempts, the ledger's usage per
// job, tenant and node, and from them the scheduler's state. Nothing of the scheduler is
// stored as such; what was in flight (a node that died, a stop whose last exit was
// recorded) is applied again as events.
#include "cluster/coordinator_impl.h"

#include <cmath>

#include "runtime/error.h"

namespace petaring::cluster {

void Coordinator::Impl::load() {
  auto now = Clock::now();
  for (NodeRow& row : state_.nodes()) {
    Node node;
    node.row = std::move(row);
    node.last_heartbeat = now;  // a fresh deadline after a restart
    nodes_[node.row.id] = std::move(node);
  }
  for (JobRow& job : state_.jobs()) jobs_[job.id] = std::move(job);
  for (AssignmentRow& a : state_.running_assignments()) placement_[a.job_id].push_back(a);

  sched::SchedulerState s;
  std::map<std::string, sched::Usage> tenants;
  std::map<int64_t, sched::Usage> node_usage;
  for (const LedgerRow& row : state_.ledger()) {
    sched::Usage u{std::llround(row.gpu_seconds * 1000), row.flops};
    for (sched::Usage* sum : {&recorded_[row.job_id], &tenants[row.tenant], &node_usage[row.node_id]}) {
      sum->gpu_ms += u.gpu_ms;
      sum->flops += u.flops;
    }
  }
  s.now = now_ms();
  // Every node starts lent; their recorded states are applied below, through the
  // scheduler, so that a job left running on a node that died or was reclaimed just
  // before a crash is stopped and queued again instead of waiting forever.
  for (const auto& [id, node] : nodes_) {
    NodeRow lent = node.row;
    lent.state = "alive";
    s.nodes.push_back(node_info(lent));
  }
  for (const auto& [id, job] : jobs_) {
    sched::JobRecord r;
    r.spec = job_spec(job);
    r.state = job.state == "queued"     ? sched::JobState::kQueued
              : job.state == "running"  ? sched::JobState::kRunning
              : job.state == "stopping" ? sched::JobState::kStopping
              : job.state == "finished" ? sched::JobState::kFinished
              : job.state == "failed"   ? sched::JobState::kFailed
                                        : sched::JobState::kCancelled;
    r.submitted_ms = job.submitted_ms;
    r.started_ms = job.started_ms;
    r.ended_ms = job.finished_ms;
    r.restarts = job.attempt > 0 ? static_cast<int>(job.attempt) - 1 : 0;
    r.end_reason = job.reason;
    r.usage = recorded_[id];
    if (r.state == sched::JobState::kStopping) {
      r.stop_cause = job.after_stop == "cancelled" ? sched::StopCause::kCancelled : sched::StopCause::kReclaimed;
    }
    if (r.state == sched::JobState::kRunning || r.state == sched::JobState::kStopping) {
      for (const AssignmentRow& a : placement_[id]) {
        r.placement.ranks.push_back({a.node_id, static_cast<int>(a.device_index)});
      }
      r.held = r.placement.ranks;
      // The attempt bills from its start: the ledger gets it all when it ends.
      r.billing = true;
      r.billed_until = job.started_ms;
    }
    for (int64_t t : {job.submitted_ms, job.started_ms, job.finished_ms}) s.now = std::max(s.now, t);
    s.jobs.push_back(std::move(r));
  }
  for (const auto& [name, u] : tenants) s.tenants.push_back({name, u});
  for (const auto& [id, u] : node_usage) s.nodes_usage.push_back({std::to_string(id), u});
  clock_ms_ = s.now;
  scheduler_ = sched::Scheduler(s);
  for (const auto& [id, node] : nodes_) {
    if (node.row.state == "alive") continue;
    auto availability = node.row.state == "reclaimed" ? sched::Availability::kReclaimed : sched::Availability::kDead;
    if (node.row.state == "dead") ranks_gone(id);
    act(scheduler_.set_node_availability(id, availability, clock()),
        str_cat("node ", node.row.name, " was ", node.row.state, " when the coordinator restarted"));
  }
  // A stop whose last exit was recorded just before a crash completes now.
  for (auto& [id, job] : jobs_) check_stopped(job);
}

}  // namespace petaring::cluster
