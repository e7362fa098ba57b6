// A job's attempts and the clients' job requests. An attempt starts on the scheduler's
// placement; it ends finished, or is stopped (a failed rank, a lost node, a reclaim, a
// cancel, a preemption) and is "stopping", holding its GPUs, until its ranks are gone;
// then the ledger gets its usage and the job its next state. Also: submit, cancel, the
// job list and the ledger, and the checkpoint folder each attempt is handed.
#include "cluster/coordinator_impl.h"

#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring::cluster {

std::string Coordinator::Impl::checkpoint_dir(const JobRow& job) {
  auto known = checkpoint_dirs_.find(job.id);
  if (known != checkpoint_dirs_.end()) return known->second;
  std::string dir;
  try {
    dir = parse_recipe(job.recipe_yaml, job.name.empty() ? "<submitted recipe>" : job.name).checkpoint.dir;
  } catch (const Error&) {
    dir.clear();  // checked at submit; a later build's stricter check leaves the default
  }
  if (dir.empty() || dir.front() != '/') {
    dir = options_.shared_dir.empty() ? "" : str_cat(options_.shared_dir, "/job-", job.id, "/checkpoints");
  }
  return checkpoint_dirs_[job.id] = dir;
}

void Coordinator::Impl::rank_exited(Node& node, int64_t job_id, uint32_t attempt, uint32_t rank, int32_t code) {
  auto job = jobs_.find(job_id);
  auto placed = placement_.find(job_id);
  if (job == jobs_.end() || job->second.attempt != attempt || placed == placement_.end()) return;
  bool all_done = true;
  for (AssignmentRow& a : placed->second) {
    if (a.rank == rank && a.node_id == node.row.id && a.state == "running") {
      a.state = "exited";
      a.exit_code = code;
      state_.set_assignment_end(job_id, attempt, rank, "exited", code);
    }
    all_done = all_done && a.state == "exited" && a.exit_code == 0;
  }
  if (job->second.state == "stopping") {
    check_stopped(job->second);
  } else if (code == kPreemptedExitCode) {
    // The trainer was preempted (SIGTERM from the host, say): every rank stops after the
    // same step and its checkpoint is on disk. Re-placed; not a failure.
    end_attempt(job->second, "queued",
                str_cat("attempt ", attempt, ": rank ", rank, " on node ", node.row.name,
                        " was preempted (exit ", code, ") after a checkpoint; it resumes from it"),
                /*failure=*/false);
  } else if (code != 0) {
    for (const AssignmentRow& a : placed->second) {
      auto other = nodes_.find(a.node_id);
      if (other != nodes_.end() && a.node_id != node.row.id) other->second.suspect = true;
    }
    end_attempt(job->second, "queued",
                str_cat("attempt ", attempt, ": rank ", rank, " on node ", node.row.name, " exited with code ", code),
                /*failure=*/true);
  } else if (all_done) {
    end_attempt(job->second, "finished", "");
  }
}

void Coordinator::Impl::check_stopped(JobRow& job) {
  if (job.state != "stopping") return;
  for (const AssignmentRow& a : placement_[job.id]) {
    if (a.state == "running") return;
  }
  complete_attempt(job, job.after_stop.empty() ? "queued" : job.after_stop, job.reason);
}

void Coordinator::Impl::end_attempt(JobRow& job, std::string new_state, std::string reason, bool failure) {
  tables_.erase({job.id, job.attempt});
  if (failure) job.failures += 1;
  int still_running = 0;
  for (const AssignmentRow& a : placement_[job.id]) {
    if (a.state != "running") continue;
    ++still_running;
    auto node = nodes_.find(a.node_id);
    if (node != nodes_.end()) node->second.stops.push_back({job.id, a.attempt, a.rank});
  }
  if (new_state == "finished" || still_running == 0) return complete_attempt(job, new_state, reason);
  job.state = "stopping";
  job.after_stop = new_state;
  job.reason = reason;
  state_.update_job(job);
  PR_LOG(kInfo) << "coordinator: job " << job.id << " attempt " << job.attempt << " stopping (" << reason
                << "): its GPUs stay held until its " << still_running << " running rank(s) exit";
}

void Coordinator::Impl::complete_attempt(JobRow& job, std::string new_state, std::string reason) {
  int64_t now = clock();
  std::map<int64_t, int> gpus_by_node;
  for (const AssignmentRow& a : placement_[job.id]) gpus_by_node[a.node_id] += 1;
  if (new_state == "queued" && job.failures >= options_.max_attempts) {
    new_state = "failed";
    reason = str_cat(reason, "; gave up after ", job.failures, " failed attempts");
  }
  if (new_state == "finished") {
    scheduler_.job_finished(job.id, now);
  } else if (new_state == "failed") {
    scheduler_.job_failed(job.id, now, reason);
  } else {
    // A cancel ends the job; the stop it returns for a running job is this one.
    if (new_state == "cancelled") scheduler_.cancel(job.id, now);
    scheduler_.job_stopped(job.id, now);  // re-queued, or cancelled after a cancel
  }
  // The ledger rows: what the scheduler's ledger accrued for this attempt, split over
  // its nodes by the GPUs each held.
  const sched::Usage& total = scheduler_.job(job.id).usage;
  sched::Usage& recorded = recorded_[job.id];
  sched::Usage attempt{total.gpu_ms - recorded.gpu_ms, total.flops - recorded.flops};
  recorded = total;
  std::vector<LedgerRow> ledger;
  double gpus = static_cast<double>(placement_[job.id].size());
  for (const auto& [node_id, count] : gpus_by_node) {
    double share = count / gpus;
    ledger.push_back({0, job.id, job.attempt, job.tenant, node_id, attempt.gpu_ms * share / 1000.0,
                      attempt.flops * share, now});
  }
  job.state = new_state;
  job.reason = reason;
  job.after_stop.clear();
  if (new_state != "queued") job.finished_ms = now;
  state_.end_attempt(job, ledger);
  dirty_ = true;
  placement_.erase(job.id);
  tables_.erase({job.id, job.attempt});
  PR_LOG(kInfo) << "coordinator: job " << job.id << " attempt " << job.attempt << " ended: " << new_state
                << (reason.empty() ? "" : " (" + reason + ")");
}

void Coordinator::Impl::start_attempt(JobRow& job, const sched::Placement& placement) {
  job.attempt += 1;
  job.state = "running";
  job.reason = "";
  job.started_ms = scheduler_.job(job.id).started_ms;
  job.gpus = static_cast<uint32_t>(placement.ranks.size());
  std::vector<AssignmentRow> assignments;
  for (uint32_t rank = 0; rank < placement.ranks.size(); ++rank) {
    const sched::Slot& slot = placement.ranks[rank];
    assignments.push_back(
        {job.id, job.attempt, rank, slot.node, static_cast<uint32_t>(slot.device), "running", 0});
  }
  state_.start_attempt(job, assignments);
  placement_[job.id] = std::move(assignments);
  PR_LOG(kInfo) << "coordinator: job " << job.id << " attempt " << job.attempt << " placed: " << placement_text(job.id);
}

std::string Coordinator::Impl::placement_text(int64_t job_id) const {
  auto placed = placement_.find(job_id);
  if (placed == placement_.end()) return "";
  std::string text;
  for (const AssignmentRow& a : placed->second) {
    auto node = nodes_.find(a.node_id);
    text += str_cat(text.empty() ? "" : ",", node == nodes_.end() ? "?" : node->second.row.name, ":", a.device_index);
  }
  return text;
}

int64_t Coordinator::Impl::submit(wire::Submit::Reader request) {
  JobRow job;
  job.name = request.getRecipeName();
  job.recipe_yaml = request.getRecipeYaml();
  // The same checks as `petaring train` (throws kInvalidArgument naming line and key).
  parse_recipe(job.recipe_yaml, job.name.empty() ? "<submitted recipe>" : job.name);
  job.gpus = request.getGpus();
  if (job.gpus == 0 || job.gpus > 4096) PR_FAIL(kInvalidArgument, "--gpus must be 1-4096, got ", job.gpus);
  job.min_gpus = job.gpus;
  job.max_gpus = request.getMaxGpus() == 0 ? job.gpus : request.getMaxGpus();
  if (job.max_gpus < job.min_gpus || job.max_gpus > 4096) {
    PR_FAIL(kInvalidArgument, "--max-gpus must be ", job.min_gpus, "-4096 (at least --gpus), got ", job.max_gpus);
  }
  job.priority = request.getPriority();
  job.tenant = request.getTenant();
  if (job.tenant.empty()) job.tenant = "default";
  job.submitted_ms = clock();
  job.id = state_.add_job(job);
  jobs_[job.id] = job;
  scheduler_.submit(job_spec(job), job.submitted_ms);
  dirty_ = true;
  schedule();
  return job.id;
}

const JobRow& Coordinator::Impl::job_or_fail(int64_t id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) PR_FAIL(kNotFound, "no job ", id, " in this pool; `petaring jobs` lists them");
  return it->second;
}

void Coordinator::Impl::fill_job(const JobRow& job, wire::JobInfo::Builder out) {
  out.setId(job.id);
  out.setName(job.name);
  out.setTenant(job.tenant);
  out.setPriority(job.priority);
  out.setGpus(job.gpus);
  out.setMinGpus(job.min_gpus);
  out.setMaxGpus(job.max_gpus);
  out.setState(job.state);
  out.setAttempt(job.attempt);
  out.setReason(job.state == "queued" ? wait_reason(job.id) : job.reason);
  out.setPlacement(placement_text(job.id));
  out.setLastMetrics(job.last_metrics);
  out.setSubmittedMs(job.submitted_ms);
}

std::string Coordinator::Impl::wait_reason(int64_t id) const {
  std::string text = scheduler_.describe_wait(id);
  constexpr std::string_view kPrefix = "waiting: ";
  return text.starts_with(kPrefix) ? text.substr(kPrefix.size()) : text;
}

void Coordinator::Impl::cancel(int64_t id) {
  JobRow& job = const_cast<JobRow&>(job_or_fail(id));
  if (job.state == "running") {
    act(scheduler_.cancel(id, clock()), "cancelled by a client");
  } else if (job.state == "stopping") {
    if (job.after_stop == "cancelled") PR_FAIL(kFailedPrecondition, "job ", id, " is already being cancelled");
    job.after_stop = "cancelled";
    job.reason = "cancelled by a client";
    state_.update_job(job);
    act(scheduler_.cancel(id, clock()), "cancelled by a client");
  } else if (job.state == "queued") {
    scheduler_.cancel(id, clock());
    job.state = "cancelled";
    job.reason = "cancelled by a client";
    job.finished_ms = now_ms();
    state_.update_job(job);
    dirty_ = true;
  } else {
    PR_FAIL(kFailedPrecondition, "job ", id, " is already ", job.state);
  }
  schedule();
}

void Coordinator::Impl::list_ledger(wire::Envelope::Builder reply) {
  std::vector<LedgerRow> rows = state_.ledger();
  auto list = reply.initLedger(static_cast<unsigned>(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    auto out = list[static_cast<unsigned>(i)];
    out.setId(rows[i].id);
    out.setJobId(rows[i].job_id);
    out.setAttempt(rows[i].attempt);
    out.setTenant(rows[i].tenant);
    auto node = nodes_.find(rows[i].node_id);
    out.setNode(node == nodes_.end() ? "?" : node->second.row.name);
    out.setGpuSeconds(rows[i].gpu_seconds);
    out.setFlops(rows[i].flops);
    out.setRecordedMs(rows[i].recorded_ms);
  }
}

}  // namespace petaring::cluster
