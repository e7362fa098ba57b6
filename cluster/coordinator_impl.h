// Coordinator::Impl, the coordinator's insides (coordinator.h says what it does), shared
// by the files that implement it, one concern each:
//   coordinator.cc        construction, the request dispatch (which role may send what),
//                         the scheduler glue (act, schedule, fencing) and the heartbeat
//                         watch;
//   coordinator_load.cc   rebuilding everything from the SQLite state file (state.h) after
//                         a start or a restart;
//   coordinator_nodes.cc  the workers' messages: registration, heartbeats (starts, stops,
//                         exits), reclaim, the node list;
//   coordinator_jobs.cc   a job's attempts (start, stopping, completion, the ledger rows,
//                         the checkpoint folder) and the clients' job requests;
//   coordinator_ranks.cc  the ranks' messages: joining, and the attempt's rendezvous table.
// Every method runs under mu_ (the server's I/O thread or the watch thread holds it).
// Internal: included by those files only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cluster/coordinator.h"
#include "cluster/server.h"
#include "cluster/state.h"
#include "scheduler/scheduler.h"

namespace petaring::cluster {

using Clock = std::chrono::steady_clock;
using W = wire::Envelope::Which;
using RankKey = std::tuple<int64_t, uint32_t, uint32_t>;  // job, attempt, rank
namespace sched = petaring::scheduler;

class Coordinator::Impl : public Handler {
 public:
  explicit Impl(CoordinatorOptions options);
  ~Impl() override;

  // Checks the options before anything opens; returns the state path.
  static const std::string& check(const CoordinatorOptions& options);
  std::string address() const { return server_->address(); }
  int64_t rejected() const { return server_->rejected_connections(); }

  bool allowed(const Peer& peer, W which) const override;
  void handle(const Peer& peer, wire::Envelope::Reader request, wire::Envelope::Builder reply) override;

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
  void load();

  // The coordinator's clock for the scheduler: wall-clock ms, never going backwards.
  int64_t clock();
  static sched::NodeInfo node_info(const NodeRow& row);
  static sched::JobSpec job_spec(const JobRow& job);

  // Carries out the scheduler's decisions. A stop ends the attempt (end_attempt): the
  // worker's stop asks each rank to checkpoint and exit (SIGTERM, then SIGKILL after its
  // grace period); once they have, the job goes back to the scheduler's queue (or ends,
  // if cancelled).
  void act(const std::vector<sched::Decision>& decisions, const std::string& why = "");

  // ---- workers ----

  void register_node(wire::RegisterNode::Reader request, wire::Envelope::Builder reply);
  void touch(Node& node);
  void heartbeat(wire::Heartbeat::Reader beat, wire::HeartbeatReply::Builder reply);
  bool should_run(int64_t node_id, const RankKey& key) const;

  // Assignments the node has not started yet (resent after a coordinator restart; the
  // worker ignores ranks it already runs or ran).
  void fill_starts(Node& node, const std::set<RankKey>& running, wire::HeartbeatReply::Builder reply);

  // Where the job's checkpoints live (CoordinatorOptions::shared_dir); "" = the worker's.
  std::string checkpoint_dir(const JobRow& job);
  void rank_exited(Node& node, int64_t job_id, uint32_t attempt, uint32_t rank, int32_t code);

  // Ranks of a stopping attempt placed on `node` that its worker does not run (they
  // exited and were acknowledged before, or were never started: a lost reply) are gone.
  void stopping_ranks_not_running(Node& node, const std::set<RankKey>& running);

  // The node was declared dead (or left): its ranks count as gone, so that stops waiting
  // for them complete. Call before telling the scheduler, whose stops end attempts.
  void ranks_gone(int64_t node_id);

  // Completes a stopping attempt once none of its ranks runs any more.
  void check_stopped(JobRow& job);

  // Ends the current attempt of a running job. Ranks still running are told to stop and
  // the job is "stopping" until every one has exited (the worker reports it) or is gone
  // (its node declared dead): until then its GPUs stay held, so a new job never shares a
  // GPU with ranks still shutting down. The state survives a coordinator restart (the
  // stops are sent again). Then complete_attempt() gives the job its new state.
  void end_attempt(JobRow& job, std::string new_state, std::string reason, bool failure = false);

  // The attempt is over and none of its ranks runs: ledger rows per node, the GPUs back
  // to the scheduler, and the job's new state ("queued" restarts it, unless out of
  // attempts).
  void complete_attempt(JobRow& job, std::string new_state, std::string reason);

  // ---- placement ----

  // Places what can start: the scheduler's pass. Runs only when something it depends on
  // changed (dirty_): a submit, an attempt ending, a node joining, leaving or coming back.
  void schedule();

  // A `suspect` node held ranks of an attempt that another rank's failure ended (its
  // worker may have died with them). Its free devices are marked dead in the scheduler
  // until its next heartbeat (touch), so that the restart does not land on a worker that
  // died but has not timed out yet; devices held by running jobs are left alone (their
  // loss, if it comes, is the heartbeat timeout's). Event-driven, not timed: a slow host
  // does not change what the pool has.
  void fence_suspect_nodes();
  void unfence(int64_t node_id);
  void start_attempt(JobRow& job, const sched::Placement& placement);
  std::string placement_text(int64_t job_id) const;

  // ---- heartbeat watch ----

  void watch();

  // ---- clients ----

  int64_t submit(wire::Submit::Reader request);
  const JobRow& job_or_fail(int64_t id);
  void fill_job(const JobRow& job, wire::JobInfo::Builder out);

  // The scheduler's sentence without its "waiting: " prefix, e.g. "needs 7 GPUs; the
  // pool has 6 such GPUs lent; it starts when enough GPUs join the pool".
  std::string wait_reason(int64_t id) const;
  void cancel(int64_t id);
  void reclaim(const std::string& name);
  void list_nodes(wire::Envelope::Builder reply);
  void list_ledger(wire::Envelope::Builder reply);

  // ---- ranks ----

  void join_job(const Peer& peer, wire::JoinJob::Reader request, wire::Joined::Builder);
  void running_attempt_or_fail(const Peer& peer) const;

  // The rendezvous of the attempt the rank proved (rank_store.h): only its own table.
  void store_op(const Peer& peer, wire::StoreOp::Reader request, wire::StoreReply::Builder reply);
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

}  // namespace petaring::cluster
