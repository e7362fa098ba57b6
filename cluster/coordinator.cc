// The coordinator's frame: construction and shutdown, the request dispatch (which role
// may send which request), the glue to the scheduler (carrying out its decisions, the
// scheduling pass, fencing suspect nodes) and the thread that declares silent nodes dead.
// The requests themselves are handled in coordinator_nodes.cc, coordinator_jobs.cc and
// coordinator_ranks.cc; coordinator_impl.h lists who does what.
#include "cluster/coordinator_impl.h"

#include <algorithm>

#include "cluster/frame.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::cluster {

Coordinator::Impl::Impl(CoordinatorOptions options) : options_(std::move(options)), state_(check(options_)) {
  load();
  ServerOptions server;
  server.listen = options_.listen;
  server.secret = options_.secret;
  server_ = std::make_unique<Server>(server, this);
  watcher_ = std::thread([this] { watch(); });
  PR_LOG(kInfo) << "coordinator: serving the pool at " << server_->address() << ", state in "
                << options_.state_path << " (" << jobs_.size() << " jobs, " << nodes_.size() << " nodes)";
}

Coordinator::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  watcher_.join();
  server_.reset();
}

const std::string& Coordinator::Impl::check(const CoordinatorOptions& options) {
  if (!options.shared_dir.empty() && options.shared_dir.front() != '/') {
    PR_FAIL(kInvalidArgument, "--shared-dir '", options.shared_dir,
            "' must be an absolute path, the same on every worker's host (a shared filesystem's mount)");
  }
  return options.state_path;
}

bool Coordinator::Impl::allowed(const Peer& peer, W which) const {
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

void Coordinator::Impl::handle(const Peer& peer, wire::Envelope::Reader request, wire::Envelope::Builder reply) {
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

int64_t Coordinator::Impl::clock() {
  clock_ms_ = std::max(clock_ms_, now_ms());
  return clock_ms_;
}

sched::NodeInfo Coordinator::Impl::node_info(const NodeRow& row) {
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

sched::JobSpec Coordinator::Impl::job_spec(const JobRow& job) {
  sched::JobSpec spec;
  spec.id = job.id;
  spec.tenant = job.tenant;
  spec.priority = job.priority;
  spec.min_gpus = static_cast<int>(job.min_gpus);
  spec.max_gpus = static_cast<int>(job.max_gpus);
  return spec;
}

void Coordinator::Impl::act(const std::vector<sched::Decision>& decisions, const std::string& why) {
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

void Coordinator::Impl::touch(Node& node) {
  auto now = Clock::now();
  node.left = false;
  if (node.suspect) dirty_ = true;
  unfence(node.row.id);
  node.suspect = false;
  node.last_heartbeat = now;
  node.last_heartbeat_ms = now_ms();
}

void Coordinator::Impl::schedule() {
  if (!dirty_) return;
  dirty_ = false;
  fence_suspect_nodes();
  act(scheduler_.tick(clock()));
}

void Coordinator::Impl::fence_suspect_nodes() {
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

void Coordinator::Impl::unfence(int64_t node_id) {
  for (auto it = fenced_.lower_bound({node_id, 0}); it != fenced_.end() && it->first == node_id;) {
    scheduler_.set_device_availability(node_id, it->second, sched::Availability::kLent, clock());
    it = fenced_.erase(it);
    dirty_ = true;
  }
}

void Coordinator::Impl::watch() {
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

Coordinator::Coordinator(CoordinatorOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Coordinator::~Coordinator() = default;
std::string Coordinator::address() const { return impl_->address(); }
int64_t Coordinator::rejected_connections() const { return impl_->rejected(); }

}  // namespace petaring::cluster
