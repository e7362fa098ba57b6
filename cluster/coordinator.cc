#include "cluster/coordinator.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "cluster/auth.h"
#include "cluster/frame.h"
#include "cluster/state.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "scheduler/scheduler.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring::cluster {

using Clock = std::chrono::steady_clock;
using W = wire::Envelope::Which;
using RankKey = std::tuple<int64_t, uint32_t, uint32_t>;  // job, attempt, rank
namespace sched = petaring::scheduler;

class Coordinator::Impl : public Handler {
 public:
  explicit Impl(CoordinatorOptions options) : options_(std::move(options)), state_(check(options_)) {
    load();
    ServerOptions server;
    server.listen = options_.listen;
    server.secret = options_.secret;
    server_ = std::make_unique<Server>(server, this);
    watcher_ = std::thread([this] { watch(); });
    PR_LOG(kInfo) << "coordinator: serving the pool at " << server_->address() << ", state in "
                  << options_.state_path << " (" << jobs_.size() << " jobs, " << nodes_.size() << " nodes)";
  }

  ~Impl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    watcher_.join();
    server_.reset();
  }

  // Checks the options before anything opens; returns the state path.
  static const std::string& check(const CoordinatorOptions& options) {
    if (!options.shared_dir.empty() && options.shared_dir.front() != '/') {
      PR_FAIL(kInvalidArgument, "--shared-dir '", options.shared_dir,
              "' must be an absolute path, the same on every worker's host (a shared filesystem's mount)");
    }
    return options.state_path;
  }

  std::string address() const { return server_->address(); }
  int64_t rejected() const { return server_->rejected_connections(); }

  bool allowed(const Peer& peer, W which) const override {
    switch (peer.role) {
      case wire::Role::WORKER: return which == W::REGISTER_NODE || which == W::HEARTBEAT;
      case wire::Role::RANK: return which == W::JOIN_JOB || which == W::STORE_OP;
      case wire::Role::CLIENT:
        return which == W::SUBMIT || which == W::LIST_JOBS || which == W::GET_JOB ||
               which == W::CANCEL || which == W::LIST_NODES || which == W::GET_LEDGER ||
               which == W::RECLAIM;
    }
    return false;
  }

  void handle(const Peer& peer, wire::Envelope::Reader request, wire::Envelope::Builder reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    switch (request.which()) {
      case W::REGISTER_NODE: return register_node(request.getRegisterNode(), reply);
      case W::HEARTBEAT: return heartbeat(request.getHeartbeat(), reply.initHeartbeatReply());
      case W::SUBMIT: return reply.setSubmitted(submit(request.getSubmit()));
      case W::LIST_JOBS: {
        auto list = reply.initJobs(static_cast<unsigned>(jobs_.size()));
        unsigned i = 0;
        for (const auto& [id, job] : jobs_) fill_job(job, list[i++]);
        return;
      }
      case W::GET_JOB: return fill_job(job_or_fail(request.getGetJob()), reply.initJob());
      case W::CANCEL: cancel(request.getCancel()); return reply.setOk();
      case W::LIST_NODES: return list_nodes(reply);
      case W::GET_LEDGER: return list_ledger(reply);
      case W::RECLAIM: reclaim(request.getReclaim()); return reply.setOk();
      case W::JOIN_JOB: return join_job(peer, request.getJoinJob(), reply.initJoined());
      case W::STORE_OP: return store_op(peer, request.getStoreOp(), reply.initStoreReply());
      default: PR_FAIL(kInvalidArgument, "unexpected request ", envelope_kind_name(request.which()));
    }
  }

 private:
  struct Node {
    NodeRow row;
    Clock::time_point last_heartbeat;
    int64_t last_heartbeat_ms = 0;
    std::vector<RankKey> stops;  // to send with the next heartbeat reply
    bool suspect = false;        // see fence_suspect_nodes()
    bool left = false;           // reclaimed and silent: its ranks were counted gone
  };

  // Rebuilds everything from the state file: nodes, jobs, the running attempts' placements
  // and the scheduler (its jobs, held GPUs and the usage the ledger rows add up to).
  void load() {
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

  // The coordinator's clock for the scheduler: wall-clock ms, never going backwards.
  int64_t clock() {
    clock_ms_ = std::max(clock_ms_, now_ms());
    return clock_ms_;
  }

  static sched::NodeInfo node_info(const NodeRow& row) {
    sched::NodeInfo info;
    info.id = row.id;
    info.name = row.name;
    auto availability = row.state == "alive"       ? sched::Availability::kLent
                        : row.state == "reclaimed" ? sched::Availability::kReclaimed
                                                   : sched::Availability::kDead;
    for (const DeviceRow& d : row.devices) {
      info.devices.push_back({static_cast<int>(d.index), d.kind, static_cast<int64_t>(d.memory_bytes),
                              sched::Link::kPcie, d.flops_per_s, availability});
    }
    return info;
  }

  static sched::JobSpec job_spec(const JobRow& job) {
    sched::JobSpec spec;
    spec.id = job.id;
    spec.tenant = job.tenant;
    spec.priority = job.priority;
    spec.min_gpus = static_cast<int>(job.min_gpus);
    spec.max_gpus = static_cast<int>(job.max_gpus);
    return spec;
  }

  // Carries out the scheduler's decisions. A stop ends the attempt (end_attempt): the
  // worker's stop asks each rank to checkpoint and exit (SIGTERM, then SIGKILL after its
  // grace period); once they have, the job goes back to the scheduler's queue (or ends,
  // if cancelled).
  void act(const std::vector<sched::Decision>& decisions, const std::string& why = "") {
    for (const sched::Decision& d : decisions) {
      JobRow& job = jobs_.at(d.job);
      if (d.action == sched::Decision::Action::kStart) {
        start_attempt(job, d.placement);
      } else if (job.state == "running") {
        bool cancelled = d.cause == sched::StopCause::kCancelled;
        end_attempt(job, cancelled ? "cancelled" : "queued", why.empty() ? d.reason : why,
                    /*failure=*/d.cause == sched::StopCause::kLost);
      } else if (job.state == "stopping" && d.cause == sched::StopCause::kCancelled) {
        job.after_stop = "cancelled";
        state_.update_job(job);
      }
    }
  }

  // ---- workers ----

  void register_node(wire::RegisterNode::Reader request, wire::Envelope::Builder reply) {
    std::string name = request.getName();
    if (name.empty() || name.size() > 128) PR_FAIL(kInvalidArgument, "node name must be 1-128 characters");
    std::vector<DeviceRow> devices;
    for (auto d : request.getDevices()) {
      devices.push_back({d.getIndex(), d.getKind(), d.getMemoryBytes(), d.getFlopsPerS()});
    }
    int64_t id = state_.upsert_node(name, devices);
    bool known = nodes_.count(id) > 0;
    Node& node = nodes_[id];
    // A worker registers again after a lost connection or a coordinator restart; ranks
    // it still runs keep their GPUs. Otherwise the scheduler takes its devices as new.
    bool held = false;
    if (known) {
      unfence(id);
      for (const DeviceRow& d : node.row.devices) held = held || scheduler_.holder(id, static_cast<int>(d.index)) != 0;
    }
    node.row = {id, name, "alive", devices};
    if (!held) act(scheduler_.add_node(node_info(node.row), clock()));
    touch(node);
    dirty_ = true;
    PR_LOG(kInfo) << "coordinator: node " << name << " (id " << id << ") registered " << devices.size()
                  << " devices";
    reply.initRegistered().setNodeId(id);
    schedule();
  }

  void touch(Node& node) {
    auto now = Clock::now();
    node.left = false;
    if (node.suspect) dirty_ = true;
    unfence(node.row.id);
    node.suspect = false;
    node.last_heartbeat = now;
    node.last_heartbeat_ms = now_ms();
  }

  void heartbeat(wire::Heartbeat::Reader beat, wire::HeartbeatReply::Builder reply) {
    auto it = nodes_.find(beat.getNodeId());
    if (it == nodes_.end()) PR_FAIL(kNotFound, "node ", beat.getNodeId(), " is not registered; register first");
    Node& node = it->second;
    touch(node);
    if (node.row.state == "dead") {
      node.row.state = "alive";
      state_.set_node_state(node.row.id, "alive");
      act(scheduler_.set_node_availability(node.row.id, sched::Availability::kLent, clock()));
      dirty_ = true;
      PR_LOG(kInfo) << "coordinator: node " << node.row.name << " is back";
    }
    for (auto m : beat.getMetrics()) {
      auto job = jobs_.find(m.getJobId());
      if (job != jobs_.end() && job->second.attempt == m.getAttempt()) job->second.last_metrics = m.getLine();
    }
    for (auto e : beat.getExits()) rank_exited(node, e.getJobId(), e.getAttempt(), e.getRank(), e.getExitCode());
    std::set<RankKey> running;
    for (auto r : beat.getRunning()) {
      RankKey key{r.getJobId(), r.getAttempt(), r.getRank()};
      running.insert(key);
      if (!should_run(node.row.id, key)) node.stops.push_back(key);
    }
    stopping_ranks_not_running(node, running);
    std::sort(node.stops.begin(), node.stops.end());
    node.stops.erase(std::unique(node.stops.begin(), node.stops.end()), node.stops.end());
    schedule();
    fill_starts(node, running, reply);
    auto stop = reply.initStop(static_cast<unsigned>(node.stops.size()));
    for (size_t i = 0; i < node.stops.size(); ++i) {
      stop[i].setJobId(std::get<0>(node.stops[i]));
      stop[i].setAttempt(std::get<1>(node.stops[i]));
      stop[i].setRank(std::get<2>(node.stops[i]));
    }
    node.stops.clear();
    reply.setReclaimed(node.row.state == "reclaimed");
  }

  bool should_run(int64_t node_id, const RankKey& key) const {
    auto job = jobs_.find(std::get<0>(key));
    if (job == jobs_.end() || job->second.state != "running" || job->second.attempt != std::get<1>(key)) {
      return false;
    }
    auto placed = placement_.find(job->first);
    if (placed == placement_.end()) return false;
    for (const AssignmentRow& a : placed->second) {
      if (a.rank == std::get<2>(key)) return a.node_id == node_id && a.state == "running";
    }
    return false;
  }

  // Assignments the node has not started yet (resent after a coordinator restart; the
  // worker ignores ranks it already runs or ran).
  void fill_starts(Node& node, const std::set<RankKey>& running, wire::HeartbeatReply::Builder reply) {
    std::vector<const JobRow*> to_start;
    for (const auto& [job_id, assignments] : placement_) {
      const JobRow& job = jobs_.at(job_id);
      if (job.state != "running") continue;
      bool needed = false;
      for (const AssignmentRow& a : assignments) {
        RankKey key{job_id, a.attempt, a.rank};
        if (a.node_id == node.row.id && a.state == "running" && !running.count(key) && !sent_.count(key)) {
          needed = true;
        }
      }
      if (needed) to_start.push_back(&job);
    }
    auto start = reply.initStart(static_cast<unsigned>(to_start.size()));
    for (size_t i = 0; i < to_start.size(); ++i) {
      const JobRow& job = *to_start[i];
      const auto& assignments = placement_.at(job.id);
      std::vector<uint32_t> ranks;
      for (const AssignmentRow& a : assignments) {
        if (a.node_id == node.row.id) {
          ranks.push_back(a.rank);
          sent_.insert({job.id, a.attempt, a.rank});
        }
      }
      auto out = start[i];
      out.setJobId(job.id);
      out.setAttempt(job.attempt);
      out.setRecipeYaml(job.recipe_yaml);
      out.setWorldSize(job.gpus);
      auto list = out.initRanks(static_cast<unsigned>(ranks.size()));
      for (size_t r = 0; r < ranks.size(); ++r) list.set(static_cast<unsigned>(r), ranks[r]);
      std::string token = job_token(options_.secret, job.id, job.attempt);
      out.setToken(kj::arrayPtr(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
      out.setResume(job.attempt > 1);
      out.setCheckpointDir(checkpoint_dir(job));
    }
  }

  // Where the job's checkpoints live (CoordinatorOptions::shared_dir); "" = the worker's.
  std::string checkpoint_dir(const JobRow& job) {
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

  void rank_exited(Node& node, int64_t job_id, uint32_t attempt, uint32_t rank, int32_t code) {
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

  // Ranks of a stopping attempt placed on `node` that its worker does not run (they
  // exited and were acknowledged before, or were never started: a lost reply) are gone.
  void stopping_ranks_not_running(Node& node, const std::set<RankKey>& running) {
    for (auto& [job_id, assignments] : placement_) {
      JobRow& job = jobs_.at(job_id);
      if (job.state != "stopping") continue;
      bool changed = false;
      for (AssignmentRow& a : assignments) {
        if (a.node_id != node.row.id || a.state != "running" || running.count({job_id, a.attempt, a.rank})) continue;
        a.state = "gone";
        a.exit_code = -1;
        state_.set_assignment_end(job_id, a.attempt, a.rank, "gone", -1);
        changed = true;
      }
      if (changed) check_stopped(job);
    }
  }

  // The node was declared dead (or left): its ranks count as gone, so that stops waiting
  // for them complete. Call before telling the scheduler, whose stops end attempts.
  void ranks_gone(int64_t node_id) {
    std::vector<int64_t> touched;
    for (auto& [job_id, assignments] : placement_) {
      for (AssignmentRow& a : assignments) {
        if (a.node_id != node_id || a.state != "running") continue;
        a.state = "gone";
        a.exit_code = -1;
        state_.set_assignment_end(job_id, a.attempt, a.rank, "gone", -1);
        touched.push_back(job_id);
      }
    }
    for (int64_t id : touched) check_stopped(jobs_.at(id));
  }

  // Completes a stopping attempt once none of its ranks runs any more.
  void check_stopped(JobRow& job) {
    if (job.state != "stopping") return;
    for (const AssignmentRow& a : placement_[job.id]) {
      if (a.state == "running") return;
    }
    complete_attempt(job, job.after_stop.empty() ? "queued" : job.after_stop, job.reason);
  }

  // Ends the current attempt of a running job. Ranks still running are told to stop and
  // the job is "stopping" until every one has exited (the worker reports it) or is gone
  // (its node declared dead): until then its GPUs stay held, so a new job never shares a
  // GPU with ranks still shutting down. The state survives a coordinator restart (the
  // stops are sent again). Then complete_attempt() gives the job its new state.
  void end_attempt(JobRow& job, std::string new_state, std::string reason, bool failure = false) {
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

  // The attempt is over and none of its ranks runs: ledger rows per node, the GPUs back
  // to the scheduler, and the job's new state ("queued" restarts it, unless out of
  // attempts).
  void complete_attempt(JobRow& job, std::string new_state, std::string reason) {
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

  // ---- placement ----

  // Places what can start: the scheduler's pass. Runs only when something it depends on
  // changed (dirty_): a submit, an attempt ending, a node joining, leaving or coming back.
  void schedule() {
    if (!dirty_) return;
    dirty_ = false;
    fence_suspect_nodes();
    act(scheduler_.tick(clock()));
  }

  // A `suspect` node held ranks of an attempt that another rank's failure ended (its
  // worker may have died with them). Its free devices are marked dead in the scheduler
  // until its next heartbeat (touch), so that the restart does not land on a worker that
  // died but has not timed out yet; devices held by running jobs are left alone (their
  // loss, if it comes, is the heartbeat timeout's). Event-driven, not timed: a slow host
  // does not change what the pool has.
  void fence_suspect_nodes() {
    int64_t t = clock();
    for (const auto& [id, node] : nodes_) {
      if (node.row.state != "alive" || !node.suspect) continue;
      for (const DeviceRow& d : node.row.devices) {
        auto key = std::make_pair(id, static_cast<int>(d.index));
        if (fenced_.count(key) || scheduler_.holder(id, key.second) != 0) continue;
        scheduler_.set_device_availability(id, key.second, sched::Availability::kDead, t);
        fenced_.insert(key);
      }
    }
  }

  void unfence(int64_t node_id) {
    for (auto it = fenced_.lower_bound({node_id, 0}); it != fenced_.end() && it->first == node_id;) {
      scheduler_.set_device_availability(node_id, it->second, sched::Availability::kLent, clock());
      it = fenced_.erase(it);
      dirty_ = true;
    }
  }

  void start_attempt(JobRow& job, const sched::Placement& placement) {
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

  std::string placement_text(int64_t job_id) const {
    auto placed = placement_.find(job_id);
    if (placed == placement_.end()) return "";
    std::string text;
    for (const AssignmentRow& a : placed->second) {
      auto node = nodes_.find(a.node_id);
      text += str_cat(text.empty() ? "" : ",", node == nodes_.end() ? "?" : node->second.row.name, ":", a.device_index);
    }
    return text;
  }

  // ---- heartbeat watch ----

  void watch() {
    std::unique_lock<std::mutex> lock(mu_);
    auto period = std::max(std::chrono::milliseconds(10), options_.heartbeat_timeout / 5);
    while (!stopping_) {
      wake_.wait_for(lock, period);
      if (stopping_) break;
      auto now = Clock::now();
      bool changed = false;
      for (auto& [id, node] : nodes_) {
        if (now - node.last_heartbeat <= options_.heartbeat_timeout) continue;
        if (node.row.state == "reclaimed" && !node.left) {
          // A reclaimed node's worker leaves once its ranks stopped; if their exits were
          // not reported (say the coordinator was down), they count as gone now.
          node.left = true;
          ranks_gone(id);
          changed = true;
        }
        if (node.row.state != "alive") continue;
        node.row.state = "dead";
        ranks_gone(id);
        state_.set_node_state(id, "dead");
        dirty_ = true;
        PR_LOG(kWarn) << "coordinator: node " << node.row.name << " missed its heartbeats for "
                      << options_.heartbeat_timeout.count() << " ms; its jobs restart elsewhere";
        std::erase_if(fenced_, [&](const auto& f) { return f.first == id; });
        act(scheduler_.set_node_availability(id, sched::Availability::kDead, clock()),
            str_cat("node ", node.row.name, " stopped heartbeating"));
        changed = true;
      }
      if (changed) schedule();
    }
  }

  // ---- clients ----

  int64_t submit(wire::Submit::Reader request) {
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

  const JobRow& job_or_fail(int64_t id) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) PR_FAIL(kNotFound, "no job ", id, " in this pool; `petaring jobs` lists them");
    return it->second;
  }

  void fill_job(const JobRow& job, wire::JobInfo::Builder out) {
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

  // The scheduler's sentence without its "waiting: " prefix, e.g. "needs 7 GPUs; the
  // pool has 6 such GPUs lent; it starts when enough GPUs join the pool".
  std::string wait_reason(int64_t id) const {
    std::string text = scheduler_.describe_wait(id);
    constexpr std::string_view kPrefix = "waiting: ";
    return text.starts_with(kPrefix) ? text.substr(kPrefix.size()) : text;
  }

  void cancel(int64_t id) {
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

  void reclaim(const std::string& name) {
    for (auto& [id, node] : nodes_) {
      if (node.row.name != name) continue;
      node.row.state = "reclaimed";
      state_.set_node_state(id, "reclaimed");
      dirty_ = true;
      std::erase_if(fenced_, [&](const auto& f) { return f.first == id; });
      act(scheduler_.set_node_availability(id, sched::Availability::kReclaimed, clock()),
          str_cat("node ", name, " was reclaimed by its owner"));
      PR_LOG(kInfo) << "coordinator: node " << name << " reclaimed by its owner";
      schedule();
      return;
    }
    PR_FAIL(kNotFound, "no node named '", name, "'; `petaring nodes` lists them");
  }

  void list_nodes(wire::Envelope::Builder reply) {
    std::map<int64_t, uint32_t> busy;
    for (const auto& [id, assignments] : placement_) {
      for (const AssignmentRow& a : assignments) busy[a.node_id] += 1;
    }
    auto list = reply.initNodes(static_cast<unsigned>(nodes_.size()));
    unsigned i = 0;
    for (const auto& [id, node] : nodes_) {
      auto out = list[i++];
      out.setId(id);
      out.setName(node.row.name);
      out.setState(node.row.state);
      out.setDevices(static_cast<uint32_t>(node.row.devices.size()));
      out.setBusy(busy[id]);
      out.setLastHeartbeatMs(node.last_heartbeat_ms);
    }
  }

  void list_ledger(wire::Envelope::Builder reply) {
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

  // ---- ranks ----

  void join_job(const Peer& peer, wire::JoinJob::Reader request, wire::Joined::Builder) {
    if (request.getJobId() != peer.job_id || request.getAttempt() != peer.attempt) {
      PR_FAIL(kPermissionDenied, "a rank of job ", peer.job_id, " attempt ", peer.attempt,
              " may not join job ", request.getJobId(), " attempt ", request.getAttempt());
    }
    running_attempt_or_fail(peer);
  }

  void running_attempt_or_fail(const Peer& peer) const {
    auto job = jobs_.find(peer.job_id);
    if (job == jobs_.end() || job->second.state != "running" || job->second.attempt != peer.attempt) {
      PR_FAIL(kFailedPrecondition, "job ", peer.job_id, " attempt ", peer.attempt, " is not running",
              job == jobs_.end() ? std::string()
                                 : str_cat(" (the job is ", job->second.state, " at attempt ", job->second.attempt,
                                           ")"),
              "; this rank should exit");
    }
  }

  // The rendezvous of the attempt the rank proved (rank_store.h): only its own table.
  void store_op(const Peer& peer, wire::StoreOp::Reader request, wire::StoreReply::Builder reply) {
    running_attempt_or_fail(peer);
    constexpr size_t kMaxKeys = 65536, kMaxKeyBytes = 1024, kMaxValueBytes = 1 << 20;
    std::string key = request.getKey();
    if (key.size() > kMaxKeyBytes) PR_FAIL(kInvalidArgument, "store key of ", key.size(), " bytes; at most ", kMaxKeyBytes);
    auto& table = tables_[{peer.job_id, peer.attempt}];
    if (request.getOp() != wire::StoreOp::Op::GET && !table.count(key) && table.size() >= kMaxKeys) {
      PR_FAIL(kInvalidArgument, "the rendezvous of job ", peer.job_id, " holds ", kMaxKeys, " keys already");
    }
    switch (request.getOp()) {
      case wire::StoreOp::Op::SET: {
        auto value = request.getValue();
        if (value.size() > kMaxValueBytes) {
          PR_FAIL(kInvalidArgument, "store value of ", value.size(), " bytes for key '", key, "'; at most ", kMaxValueBytes);
        }
        table[key] = std::string(reinterpret_cast<const char*>(value.begin()), value.size());
        reply.setFound(true);
        return;
      }
      case wire::StoreOp::Op::GET: {
        auto found = table.find(key);
        reply.setFound(found != table.end());
        if (found != table.end()) {
          reply.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(found->second.data()), found->second.size()));
        }
        return;
      }
      case wire::StoreOp::Op::ADD: {
        int64_t count = 0;
        auto found = table.find(key);
        if (found != table.end()) {
          char* end = nullptr;
          count = std::strtoll(found->second.c_str(), &end, 10);
          if (found->second.empty() || *end != '\0') {
            PR_FAIL(kInvalidArgument, "store key '", key, "' does not hold a counter");
          }
        }
        std::string text = std::to_string(count + request.getDelta());
        table[key] = text;
        reply.setFound(true);
        reply.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
        return;
      }
    }
    PR_FAIL(kInvalidArgument, "unknown store operation ", static_cast<int>(request.getOp()));
  }

  CoordinatorOptions options_;
  PoolState state_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool dirty_ = true;  // schedule() has something to look at
  std::map<int64_t, Node> nodes_;
  std::map<int64_t, JobRow> jobs_;
  std::map<int64_t, std::vector<AssignmentRow>> placement_;  // running jobs' current attempt
  std::set<RankKey> sent_;
  std::map<int64_t, std::string> checkpoint_dirs_;  // checkpoint_dir(), per job
  // Running attempts' rendezvous tables (rank_store.h), kept in memory only: after a
  // coordinator restart the ranks that still need one fail and the attempt restarts.
  std::map<std::pair<int64_t, uint32_t>, std::map<std::string, std::string>> tables_;
  sched::Scheduler scheduler_;  // every placement and queue decision (rebuilt by load())
  int64_t clock_ms_ = 0;
  std::map<int64_t, sched::Usage> recorded_;  // per job: usage already in ledger rows
  std::set<std::pair<int64_t, int>> fenced_;  // (node, device) marked dead while suspect
  std::unique_ptr<Server> server_;
  std::thread watcher_;
};

Coordinator::Coordinator(CoordinatorOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Coordinator::~Coordinator() = default;
std::string Coordinator::address() const { return impl_->address(); }
int64_t Coordinator::rejected_connections() const { return impl_->rejected(); }

}  // namespace petaring::cluster
