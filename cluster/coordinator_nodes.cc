// The workers' side of the coordinator: registration, heartbeats (what to start and stop,
// the exits and metrics they report, the ranks of a stopping attempt that are gone), an
// owner's reclaim and the node list.
#include "cluster/coordinator_impl.h"

#include <algorithm>

#include "cluster/auth.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::cluster {

void Coordinator::Impl::register_node(wire::RegisterNode::Reader request, wire::Envelope::Builder reply) {
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

void Coordinator::Impl::heartbeat(wire::Heartbeat::Reader beat, wire::HeartbeatReply::Builder reply) {
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

bool Coordinator::Impl::should_run(int64_t node_id, const RankKey& key) const {
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

void Coordinator::Impl::fill_starts(Node& node, const std::set<RankKey>& running, wire::HeartbeatReply::Builder reply) {
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

void Coordinator::Impl::stopping_ranks_not_running(Node& node, const std::set<RankKey>& running) {
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

void Coordinator::Impl::ranks_gone(int64_t node_id) {
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

void Coordinator::Impl::reclaim(const std::string& name) {
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

void Coordinator::Impl::list_nodes(wire::Envelope::Builder reply) {
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

}  // namespace petaring::cluster
