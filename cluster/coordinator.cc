#include "cluster/coordinator.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "cluster/auth.h"
#include "cluster/frame.h"
#include "cluster/placement.h"
#include "cluster/state.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/recipe.h"

namespace petaring::cluster {

using Clock = std::chrono::steady_clock;
using W = wire::Envelope::Which;
using RankKey = std::tuple<int64_t, uint32_t, uint32_t>;  // job, attempt, rank

class Coordinator::Impl : public Handler {
 public:
  explicit Impl(CoordinatorOptions options) : options_(std::move(options)), state_(options_.state_path) {
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

  std::string address() const { return server_->address(); }
  int64_t rejected() const { return server_->rejected_connections(); }

  bool allowed(const Peer& peer, W which) const override {
    switch (peer.role) {
      case wire::Role::WORKER: return which == W::REGISTER_NODE || which == W::HEARTBEAT;
      case wire::Role::RANK: return which == W::JOIN_JOB;
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
      default: PR_FAIL(kInvalidArgument, "unexpected request ", envelope_kind_name(request.which()));
    }
  }

 private:
  struct Node {
    NodeRow row;
    Clock::time_point last_heartbeat;
    int64_t last_heartbeat_ms = 0;
    std::vector<RankKey> stops;  // to send with the next heartbeat reply
    bool suspect = false;        // see stale()
  };

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
  }

  // ---- workers ----

  void register_node(wire::RegisterNode::Reader request, wire::Envelope::Builder reply) {
    std::string name = request.getName();
    if (name.empty() || name.size() > 128) PR_FAIL(kInvalidArgument, "node name must be 1-128 characters");
    std::vector<DeviceRow> devices;
    for (auto d : request.getDevices()) devices.push_back({d.getIndex(), d.getKind(), d.getMemoryBytes()});
    int64_t id = state_.upsert_node(name, devices);
    Node& node = nodes_[id];
    node.row = {id, name, "alive", devices};
    touch(node);
    dirty_ = true;
    PR_LOG(kInfo) << "coordinator: node " << name << " (id " << id << ") registered " << devices.size()
                  << " devices";
    reply.initRegistered().setNodeId(id);
    schedule();
  }

  // A node silent for half the timeout gets no new ranks (it is probably gone, and an
  // attempt placed there would only fail at the timeout); it counts again once it beats.
  // A node is also skipped while `suspect`: it held ranks of an attempt that another rank's
  // failure ended (its worker may have died with them); its next heartbeat clears that.
  bool stale(const Node& node, Clock::time_point now) const {
    return node.suspect || now - node.last_heartbeat > options_.heartbeat_timeout / 2;
  }

  void touch(Node& node) {
    auto now = Clock::now();
    if (stale(node, now)) dirty_ = true;
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
    }
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
        state_.set_assignment_exit(job_id, attempt, rank, code);
      }
      all_done = all_done && a.state == "exited" && a.exit_code == 0;
    }
    if (code != 0) {
      for (const AssignmentRow& a : placed->second) {
        auto other = nodes_.find(a.node_id);
        if (other != nodes_.end() && a.node_id != node.row.id) other->second.suspect = true;
      }
      end_attempt(job->second, "queued",
                  str_cat("attempt ", attempt, ": rank ", rank, " on node ", node.row.name, " exited with code ", code));
    } else if (all_done) {
      end_attempt(job->second, "finished", "");
    }
  }

  // Ends the current attempt of a running job: ledger rows per node, stops for ranks
  // still running, and the job's new state ("queued" restarts it, unless out of attempts).
  void end_attempt(JobRow& job, std::string new_state, std::string reason) {
    int64_t now = now_ms();
    std::map<int64_t, double> seconds_by_node;
    double seconds = std::max<int64_t>(0, now - job.started_ms) / 1000.0;
    for (const AssignmentRow& a : placement_[job.id]) {
      seconds_by_node[a.node_id] += seconds;
      if (a.state == "running") {
        auto node = nodes_.find(a.node_id);
        if (node != nodes_.end()) node->second.stops.push_back({job.id, a.attempt, a.rank});
      }
    }
    std::vector<LedgerRow> ledger;
    for (const auto& [node_id, gpu_seconds] : seconds_by_node) {
      ledger.push_back({0, job.id, job.attempt, job.tenant, node_id, gpu_seconds, now});
    }
    if (new_state == "queued" && job.attempt >= options_.max_attempts) {
      new_state = "failed";
      reason = str_cat(reason, "; gave up after ", job.attempt, " attempts");
    }
    job.state = new_state;
    job.reason = reason;
    if (new_state != "queued") job.finished_ms = now;
    state_.end_attempt(job, ledger);
    dirty_ = true;
    placement_.erase(job.id);
    stores_.erase({job.id, job.attempt});
    PR_LOG(kInfo) << "coordinator: job " << job.id << " attempt " << job.attempt << " ended: " << new_state
                  << (reason.empty() ? "" : " (" + reason + ")");
  }

  // ---- placement ----

  // Places what can start. Runs only when something it depends on changed (dirty_): a
  // submit, an attempt ending, a node joining, leaving or coming back.
  void schedule() {
    if (!dirty_) return;
    dirty_ = false;
    size_t total = 0;
    std::map<int64_t, std::set<uint32_t>> busy;
    for (const auto& [id, assignments] : placement_) {
      for (const AssignmentRow& a : assignments) busy[a.node_id].insert(a.device_index);
    }
    std::vector<FreeDevices> free;
    auto now = Clock::now();
    for (const auto& [id, node] : nodes_) {
      if (node.row.state != "alive") continue;
      total += node.row.devices.size();
      if (stale(node, now)) continue;
      FreeDevices f{id, {}};
      for (const DeviceRow& d : node.row.devices) {
        if (!busy[id].count(d.index)) f.devices.push_back(d.index);
      }
      free.push_back(std::move(f));
    }
    std::vector<JobRow*> queued;
    for (auto& [id, job] : jobs_) {
      if (job.state == "queued") queued.push_back(&job);
    }
    std::stable_sort(queued.begin(), queued.end(),
                     [](const JobRow* a, const JobRow* b) { return a->priority > b->priority; });
    const JobRow* head = nullptr;  // the first job that fits the pool but not its free devices
    for (JobRow* job : queued) {
      if (job->gpus > total) {
        job->reason = str_cat("needs ", job->gpus, " GPUs; the pool has ", total);
        continue;
      }
      if (head) {
        job->reason = str_cat("queued behind job ", head->id);
        continue;
      }
      auto slots = place_gang(free, job->gpus);
      if (!slots) {
        size_t idle = 0;
        for (const auto& f : free) idle += f.devices.size();
        job->reason = str_cat("waiting for ", job->gpus, " free GPUs (", idle, " of ", total, " free)");
        head = job;
        continue;
      }
      start_attempt(*job, *slots);
      for (auto& f : free) {
        for (const Slot& s : *slots) {
          if (s.node_id == f.node_id) std::erase(f.devices, s.device_index);
        }
      }
    }
  }

  void start_attempt(JobRow& job, const std::vector<Slot>& slots) {
    job.attempt += 1;
    job.state = "running";
    job.reason = "";
    job.started_ms = now_ms();
    std::vector<AssignmentRow> assignments;
    for (uint32_t rank = 0; rank < slots.size(); ++rank) {
      assignments.push_back({job.id, job.attempt, rank, slots[rank].node_id, slots[rank].device_index, "running", 0});
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
        if (node.row.state != "alive" || now - node.last_heartbeat <= options_.heartbeat_timeout) continue;
        node.row.state = "dead";
        state_.set_node_state(id, "dead");
        dirty_ = true;
        PR_LOG(kWarn) << "coordinator: node " << node.row.name << " missed its heartbeats for "
                      << options_.heartbeat_timeout.count() << " ms; its jobs restart elsewhere";
        lose_node(id, str_cat("node ", node.row.name, " stopped heartbeating"));
        changed = true;
      }
      if (changed) schedule();
    }
  }

  void lose_node(int64_t node_id, const std::string& reason) {
    std::vector<int64_t> affected;
    for (const auto& [job_id, assignments] : placement_) {
      for (const AssignmentRow& a : assignments) {
        if (a.node_id == node_id) {
          affected.push_back(job_id);
          break;
        }
      }
    }
    for (int64_t job_id : affected) end_attempt(jobs_.at(job_id), "queued", reason);
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
    job.priority = request.getPriority();
    job.tenant = request.getTenant();
    if (job.tenant.empty()) job.tenant = "default";
    job.submitted_ms = now_ms();
    job.id = state_.add_job(job);
    jobs_[job.id] = job;
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
    out.setState(job.state);
    out.setAttempt(job.attempt);
    out.setReason(job.reason);
    out.setPlacement(placement_text(job.id));
    out.setLastMetrics(job.last_metrics);
    out.setSubmittedMs(job.submitted_ms);
  }

  void cancel(int64_t id) {
    JobRow& job = const_cast<JobRow&>(job_or_fail(id));
    if (job.state == "running") {
      end_attempt(job, "cancelled", "cancelled by a client");
    } else if (job.state == "queued") {
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
      lose_node(id, str_cat("node ", name, " was reclaimed by its owner"));
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
      out.setRecordedMs(rows[i].recorded_ms);
    }
  }

  // ---- ranks ----

  void join_job(const Peer& peer, wire::JoinJob::Reader request, wire::Joined::Builder reply) {
    if (request.getJobId() != peer.job_id || request.getAttempt() != peer.attempt) {
      PR_FAIL(kPermissionDenied, "a rank of job ", peer.job_id, " attempt ", peer.attempt,
              " may not join job ", request.getJobId(), " attempt ", request.getAttempt());
    }
    auto job = jobs_.find(peer.job_id);
    if (job == jobs_.end() || job->second.state != "running" || job->second.attempt != peer.attempt) {
      PR_FAIL(kFailedPrecondition, "job ", peer.job_id, " attempt ", peer.attempt, " is not running");
    }
    auto key = std::make_pair(peer.job_id, peer.attempt);
    auto& store = stores_[key];
    std::string host = options_.listen.substr(0, options_.listen.rfind(':'));
    if (!store) store = std::make_unique<TcpStoreServer>(0, host);
    reply.setStoreAddress(str_cat(host, ":", store->port()));
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
  std::map<std::pair<int64_t, uint32_t>, std::unique_ptr<TcpStoreServer>> stores_;
  std::unique_ptr<Server> server_;
  std::thread watcher_;
};

Coordinator::Coordinator(CoordinatorOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Coordinator::~Coordinator() = default;
std::string Coordinator::address() const { return impl_->address(); }
int64_t Coordinator::rejected_connections() const { return impl_->rejected(); }

}  // namespace petaring::cluster
