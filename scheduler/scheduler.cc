// Scheduler: construction, job events, queries, snapshot and restore.
#include "scheduler/scheduler.h"

#include <algorithm>

#include "runtime/check.h"
#include "runtime/error.h"
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {

const char* to_string(Link link) { return link == Link::kPcie ? "pcie" : "usb3"; }

const char* to_string(Availability a) {
  switch (a) {
    case Availability::kLent: return "lent";
    case Availability::kReclaimed: return "reclaimed";
    case Availability::kDead: return "dead";
  }
  return "?";
}

const char* to_string(JobState state) {
  switch (state) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kStopping: return "stopping";
    case JobState::kFinished: return "finished";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "?";
}

const char* to_string(StopCause cause) {
  switch (cause) {
    case StopCause::kNone: return "none";
    case StopCause::kReclaimed: return "reclaimed";
    case StopCause::kLost: return "lost";
    case StopCause::kCancelled: return "cancelled";
  }
  return "?";
}

// ---- Impl helpers -------------------------------------------------------------------

JobRecord& Scheduler::Impl::job(JobId id) {
  auto it = jobs.find(id);
  if (it == jobs.end()) PR_FAIL(kNotFound, "scheduler: no job ", id);
  return it->second;
}

void Scheduler::Impl::advance(TimeMs t, const char* event) {
  if (t < now) {
    PR_FAIL(kFailedPrecondition, "scheduler: ", event, " at time ", t,
            " ms is earlier than the last event (", now, " ms); feed events in time order");
  }
  now = t;
}

void Scheduler::Impl::enqueue(JobRecord& j) {
  j.state = JobState::kQueued;
  j.wait = WaitInfo{};
  queue[j.spec.priority][j.spec.tenant].insert({j.submitted_ms, j.spec.id});
}

void Scheduler::Impl::dequeue(const JobRecord& j) {
  auto p = queue.find(j.spec.priority);
  PR_CHECK(p != queue.end()) << "job " << j.spec.id;
  auto t = p->second.find(j.spec.tenant);
  PR_CHECK(t != p->second.end()) << "job " << j.spec.id;
  t->second.erase({j.submitted_ms, j.spec.id});
  if (t->second.empty()) p->second.erase(t);
  if (p->second.empty()) queue.erase(p);
}

TimeMs Scheduler::Impl::expected_end(const JobRecord& j) const {
  if (j.state != JobState::kRunning || j.spec.expected_runtime_ms == 0) return kNever;
  return j.started_ms + j.spec.expected_runtime_ms;
}

void Scheduler::Impl::start(JobRecord& j, Placement placement, std::vector<Decision>& out,
                            bool backfilled) {
  dequeue(j);
  for (const Slot& slot : placement.ranks) hold(slot, j.spec.id);
  j.state = JobState::kRunning;
  j.started_ms = now;
  j.held = placement.ranks;
  j.placement = std::move(placement);
  j.billing = true;
  j.billed_until = now;
  j.stop_cause = StopCause::kNone;
  j.wait = WaitInfo{};
  start_billing(j);
  ends.insert({expected_end(j), j.spec.id});
  std::set<NodeId> node_ids;
  for (const Slot& s : j.placement.ranks) node_ids.insert(s.node);
  Decision d;
  d.action = Decision::Action::kStart;
  d.job = j.spec.id;
  d.placement = j.placement;
  d.reason = str_cat("start on ", j.placement.ranks.size(), " GPU(s) on ", node_ids.size(),
                     " node(s)", backfilled ? " (backfilled: does not delay the queue head)" : "");
  out.push_back(std::move(d));
}

void Scheduler::Impl::free_job(JobRecord& j) {
  stop_billing(j);
  for (const Slot& slot : j.held) release(slot);
  j.held.clear();
  ends.erase({expected_end(j), j.spec.id});
}

Decision Scheduler::Impl::stop(JobRecord& j, StopCause cause, std::string reason) {
  PR_CHECK(j.state == JobState::kRunning) << "job " << j.spec.id << " is " << to_string(j.state);
  ends.erase({expected_end(j), j.spec.id});
  j.state = JobState::kStopping;
  j.stop_cause = cause;
  j.end_reason = reason;
  ends.insert({expected_end(j), j.spec.id});  // kNever: its end is not known any more
  Decision d;
  d.action = Decision::Action::kStop;
  d.job = j.spec.id;
  d.cause = cause;
  d.checkpoint_first = cause != StopCause::kLost;
  d.reason = std::move(reason);
  return d;
}

// ---- construction ---------------------------------------------------------------------

Scheduler::Scheduler(SchedulerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
}

Scheduler::~Scheduler() = default;
Scheduler::Scheduler(Scheduler&&) noexcept = default;
Scheduler& Scheduler::operator=(Scheduler&&) noexcept = default;

Scheduler::Scheduler(const SchedulerState& state, SchedulerOptions options) : Scheduler(options) {
  Impl& s = *impl_;
  for (const NodeInfo& n : state.nodes) add_node(n, state.now);
  s.now = state.now;
  for (const JobRecord& record : state.jobs) {
    JobRecord& j = s.jobs.emplace(record.spec.id, record).first->second;
    if (j.state == JobState::kQueued) {
      s.queue[j.spec.priority][j.spec.tenant].insert({j.submitted_ms, j.spec.id});
    } else if (j.state == JobState::kRunning || j.state == JobState::kStopping) {
      for (const Slot& slot : j.held) s.hold(slot, j.spec.id);
      s.ends.insert({s.expected_end(j), j.spec.id});
      if (j.billing) s.start_billing(j);
    }
  }
  for (const LedgerRow& row : state.tenants) s.tenant_usage[row.key] = row.usage;
  for (const LedgerRow& row : state.nodes_usage) s.node_usage[std::stoll(row.key)] = row.usage;
}

SchedulerState Scheduler::snapshot() const {
  const Impl& s = *impl_;
  SchedulerState state;
  state.now = s.now;
  for (const auto& [id, rec] : s.nodes) state.nodes.push_back(rec.info);
  std::sort(state.nodes.begin(), state.nodes.end(),
            [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  for (const auto& [id, j] : s.jobs) state.jobs.push_back(j);
  std::sort(state.jobs.begin(), state.jobs.end(),
            [](const JobRecord& a, const JobRecord& b) { return a.spec.id < b.spec.id; });
  for (const auto& [name, u] : s.tenant_usage) state.tenants.push_back({name, u});
  for (const auto& [id, u] : s.node_usage) state.nodes_usage.push_back({std::to_string(id), u});
  return state;
}

// ---- job events -------------------------------------------------------------------------

std::vector<Decision> Scheduler::submit(const JobSpec& spec, TimeMs now) {
  impl_->advance(now, "submit");
  auto bad = [&](auto... what) {
    PR_FAIL(kInvalidArgument, "scheduler: job ", spec.id, ": ", what...);
  };
  if (spec.id <= 0) bad("job id must be > 0");
  if (impl_->jobs.count(spec.id)) bad("a job with this id was already submitted");
  if (spec.tenant.empty()) bad("tenant is empty; every job needs a tenant (fair share is per tenant)");
  if (spec.tp_size < 1) bad("tp_size must be >= 1, got ", spec.tp_size);
  if (spec.min_gpus < 1 || spec.max_gpus < spec.min_gpus) {
    bad("needs 1 <= min_gpus <= max_gpus, got min_gpus ", spec.min_gpus, ", max_gpus ", spec.max_gpus);
  }
  if (spec.min_gpus % spec.tp_size != 0 || spec.max_gpus % spec.tp_size != 0) {
    bad("min_gpus ", spec.min_gpus, " and max_gpus ", spec.max_gpus,
        " must be multiples of the tensor-parallel size ", spec.tp_size);
  }
  if (spec.memory_per_gpu_bytes < 0) bad("memory_per_gpu_bytes must be >= 0");
  if (spec.expected_runtime_ms < 0) bad("expected_runtime_ms must be >= 0 (0 = unknown)");
  JobRecord& j = impl_->jobs.emplace(spec.id, JobRecord{}).first->second;
  j.spec = spec;
  j.submitted_ms = now;
  impl_->enqueue(j);
  return {};
}

std::vector<Decision> Scheduler::cancel(JobId id, TimeMs now) {
  impl_->advance(now, "cancel");
  JobRecord& j = impl_->job(id);
  switch (j.state) {
    case JobState::kQueued:
      impl_->dequeue(j);
      j.state = JobState::kCancelled;
      j.ended_ms = now;
      j.end_reason = "cancelled while queued";
      return {};
    case JobState::kRunning:
      return {impl_->stop(j, StopCause::kCancelled, "cancelled: checkpoint and stop")};
    case JobState::kStopping:
      j.stop_cause = StopCause::kCancelled;  // ends once stopped instead of re-queueing
      j.end_reason = "cancelled while stopping";
      return {};
    default:
      return {};  // already over: cancelling again changes nothing
  }
}

namespace {
void require_active(const JobRecord& j, const char* event) {
  if (j.state != JobState::kRunning && j.state != JobState::kStopping) {
    PR_FAIL(kFailedPrecondition, "scheduler: ", event, " for job ", j.spec.id, ", which is ",
            to_string(j.state), ", not running or stopping");
  }
}
}  // namespace

std::vector<Decision> Scheduler::job_stopped(JobId id, TimeMs now) {
  impl_->advance(now, "job_stopped");
  JobRecord& j = impl_->job(id);
  require_active(j, "job_stopped");
  impl_->free_job(j);
  if (j.stop_cause == StopCause::kCancelled) {
    j.state = JobState::kCancelled;
    j.ended_ms = now;
  } else {
    ++j.restarts;
    impl_->enqueue(j);
  }
  j.stop_cause = StopCause::kNone;
  return {};
}

std::vector<Decision> Scheduler::job_finished(JobId id, TimeMs now) {
  impl_->advance(now, "job_finished");
  JobRecord& j = impl_->job(id);
  require_active(j, "job_finished");
  impl_->free_job(j);
  j.state = JobState::kFinished;
  j.stop_cause = StopCause::kNone;
  j.ended_ms = now;
  return {};
}

std::vector<Decision> Scheduler::job_failed(JobId id, TimeMs now, const std::string& reason) {
  impl_->advance(now, "job_failed");
  JobRecord& j = impl_->job(id);
  if (j.state == JobState::kQueued) {
    impl_->dequeue(j);
  } else {
    require_active(j, "job_failed");
    impl_->free_job(j);
  }
  j.state = JobState::kFailed;
  j.stop_cause = StopCause::kNone;
  j.ended_ms = now;
  j.end_reason = reason;
  return {};
}

// ---- queries ------------------------------------------------------------------------------

TimeMs Scheduler::now() const { return impl_->now; }

const JobRecord& Scheduler::job(JobId id) const {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end()) PR_FAIL(kNotFound, "scheduler: no job ", id);
  return it->second;
}

bool Scheduler::has_job(JobId id) const { return impl_->jobs.count(id) != 0; }

std::vector<JobId> Scheduler::jobs_in_state(JobState state) const {
  std::vector<JobId> out;
  for (const auto& [id, j] : impl_->jobs) {
    if (j.state == state) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

const NodeInfo& Scheduler::node(NodeId id) const { return impl_->node(id).info; }

JobId Scheduler::holder(NodeId id, int device) const {
  const NodeRec& rec = impl_->node(id);
  int pos = rec.position(device);
  if (pos < 0) PR_FAIL(kNotFound, "scheduler: node ", id, " has no device ", device);
  return rec.holder[pos];
}

Scheduler::PoolCounts Scheduler::pool() const {
  PoolCounts c;
  for (const auto& [id, rec] : impl_->nodes) {
    ++c.nodes;
    for (const DeviceInfo& d : rec.info.devices) {
      ++c.devices;
      c.lent += d.availability == Availability::kLent;
      c.reclaimed += d.availability == Availability::kReclaimed;
      c.dead += d.availability == Availability::kDead;
    }
  }
  c.free = impl_->free_total;
  return c;
}

}  // namespace petaring::scheduler
