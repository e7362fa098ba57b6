// A seeded discrete-event simulation of a pool, driving a Scheduler the way the
// coordinator does: jobs arrive, run for a while and finish (or fail, or are cancelled);
// owners reclaim GPUs and lend them again; devices and whole nodes die and come back;
// every kStop is answered with job_stopped after a delay; tick() every simulated second.
//
// The simulation keeps its own books, independent of the scheduler's: which GPU it
// handed to which job (from the kStart decisions), which devices are lent, and each
// run's billed GPU-ms. It checks against them as it goes:
//   * a kStart never names a GPU that is held, not lent, or on a node that is gone;
//   * every placement is a whole gang that honours its job's spec;
//   * at the end, every job finished, failed or was cancelled, or waits because the
//     pool is too small (and says so);
//   * the ledger per job, tenant and node equals the simulation's own accounting.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <queue>
#include <random>
#include <set>

#include "scheduler/scheduler.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace petaring::scheduler::testing {

struct SimulationParams {
  uint32_t seed = 1;
  int nodes = 1000;
  int jobs = 10000;
  TimeMs arrival_span_ms = 1'800'000;  // jobs arrive uniformly over this span
  int node_deaths = 60;                // over the fault span
  int device_reclaims = 300;
  int device_deaths = 30;
  int impossible_jobs = 5;             // need more than the pool has
  int check_every_ticks = 250;         // full invariant check (expect_consistent)
  bool check_every_event = false;      // property-test mode (small pools)
};

struct SimulationReport {
  int starts = 0, stops = 0, finished = 0, failed = 0, cancelled = 0, too_big = 0;
  int restarts = 0, backfilled = 0;
  TimeMs end_ms = 0;
  int64_t gpu_ms = 0;
  uint64_t decisions_hash = 1469598103934665603ull;  // FNV-1a over every decision, in order
};

class PoolSimulation {
 public:
  explicit PoolSimulation(SimulationParams params) : p_(params), rng_(params.seed) {}

  SimulationReport run() {
    build_pool();
    build_jobs();
    build_faults();
    TimeMs fault_end = p_.arrival_span_ms;
    TimeMs limit = p_.arrival_span_ms * 20 + 3'600'000;
    for (TimeMs t = 0;; t += 1000) {
      drain_until(t);
      if (::testing::Test::HasFatalFailure()) return report_;
      apply(s_.tick(t), t);
      if (++ticks_ % p_.check_every_ticks == 0) expect_consistent(s_);
      if (t > fault_end && events_.empty() && idle()) {
        report_.end_ms = t;
        break;
      }
      if (t > limit) {
        ADD_FAILURE() << "simulation did not drain by t = " << t << " ms: "
                      << s_.jobs_in_state(JobState::kQueued).size() << " queued, "
                      << s_.jobs_in_state(JobState::kRunning).size() << " running";
        return report_;
      }
    }
    check_end();
    return report_;
  }

 private:
  enum class Kind { kArrive, kFinish, kFail, kStopped, kCancel, kNodeDeath, kNodeReturn,
                    kReclaim, kDeviceDeath, kDeviceReturn };
  struct Event {
    TimeMs at;
    uint64_t seq;
    Kind kind;
    int64_t a = 0, b = 0, run = 0;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct Run {
    int64_t id = 0;
    TimeMs start = 0;
    TimeMs billed_end = kNever;  // set at the first loss
    std::vector<Slot> slots;
    bool over = true;
  };
  struct SimJob {
    JobSpec spec;
    TimeMs remaining_ms = 0;  // work left
    Run run;
    bool impossible = false;
    int64_t gpu_ms = 0;
  };

  int64_t rand(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void push(TimeMs at, Kind kind, int64_t a = 0, int64_t b = 0, int64_t run = 0) {
    events_.push({at, seq_++, kind, a, b, run});
  }

  void build_pool() {
    for (NodeId id = 1; id <= p_.nodes; ++id) {
      NodeInfo node = make_node(id, static_cast<int>(rand(2, 8)));
      int style = static_cast<int>(rand(0, 9));
      for (DeviceInfo& d : node.devices) {
        d.memory_bytes = int64_t{8 << static_cast<int>(rand(0, 2))} * kGiB;  // 8, 16, 32 GiB
        d.link = style < 2 ? Link::kUsb3 : (style < 4 && chance(0.5) ? Link::kUsb3 : Link::kPcie);
        d.kind = style == 9 ? "gfx1100" : "cpu";
        d.flops_per_s = 1e12 * static_cast<double>(rand(1, 50));
      }
      pool_[id] = node;
      add_node_now(node, 0);
    }
  }

  void add_node_now(const NodeInfo& node, TimeMs t) {
    s_.add_node(node, t);
    for (const DeviceInfo& d : node.devices) lent_[{node.id, d.index}] = true;
    present_.insert(node.id);
  }

  void build_jobs() {
    const char* tenants[] = {"alice", "bob", "carol", "dave", "erin"};
    for (JobId id = 1; id <= p_.jobs; ++id) {
      SimJob job;
      JobSpec& spec = job.spec;
      spec.id = id;
      spec.tenant = tenants[rand(0, 4)];
      spec.priority = chance(0.1) ? 1 : 0;
      int size_class = static_cast<int>(rand(0, 99));
      int gpus = size_class < 55 ? 1 : size_class < 75 ? 2 : size_class < 88 ? 4
               : size_class < 96 ? 8 : static_cast<int>(rand(9, 32));
      spec.min_gpus = spec.max_gpus = gpus;
      if (gpus >= 4 && chance(0.3)) {
        spec.tp_size = gpus >= 8 ? 4 : 2;
        spec.min_gpus = spec.max_gpus = (gpus / spec.tp_size) * spec.tp_size;
      } else if (chance(0.05)) {
        spec.max_gpus = gpus * 4;  // elastic
      }
      spec.memory_per_gpu_bytes = chance(0.2) ? 12 * kGiB : chance(0.1) ? 24 * kGiB : 0;
      if (chance(0.02)) spec.device_kind = "gfx1100";
      job.remaining_ms = rand(5, 600) * 1000;
      spec.expected_runtime_ms = chance(0.7) ? job.remaining_ms * rand(100, 150) / 100 : 0;
      if (id <= p_.impossible_jobs) {
        job.impossible = true;
        if (id % 2) {
          spec.min_gpus = spec.max_gpus = 100 * p_.nodes * 8;
          spec.tp_size = 1;
        } else {
          spec.memory_per_gpu_bytes = 1024 * kGiB;
        }
      }
      jobs_[id] = job;
      push(rand(0, p_.arrival_span_ms), Kind::kArrive, id);
      if (chance(0.01)) push(rand(0, p_.arrival_span_ms + 600'000), Kind::kCancel, id);
    }
  }

  void build_faults() {
    TimeMs span = p_.arrival_span_ms;
    for (int i = 0; i < p_.node_deaths; ++i) {
      push(rand(0, span), Kind::kNodeDeath, rand(1, p_.nodes));
    }
    for (int i = 0; i < p_.device_reclaims + p_.device_deaths; ++i) {
      NodeId node = rand(1, p_.nodes);
      int device = pool_[node].devices[rand(0, pool_[node].devices.size() - 1)].index;
      push(rand(0, span), i < p_.device_reclaims ? Kind::kReclaim : Kind::kDeviceDeath, node, device);
    }
  }

  bool idle() const {
    return s_.jobs_in_state(JobState::kRunning).empty() &&
           s_.jobs_in_state(JobState::kStopping).empty() && all_queued_too_big();
  }
  // Jobs still queued must be ones the pool cannot hold (random small pools make some
  // by chance: no gfx1100 node, or fewer GPUs than a job asks).
  bool all_queued_too_big() const {
    for (JobId id : s_.jobs_in_state(JobState::kQueued)) {
      if (s_.describe_wait(id).find("the pool has") == std::string::npos) return false;
    }
    return true;
  }

  void drain_until(TimeMs t) {
    while (!events_.empty() && events_.top().at <= t) {
      Event e = events_.top();
      events_.pop();
      handle(e);
      if (::testing::Test::HasFatalFailure()) return;
      if (p_.check_every_event) expect_consistent(s_);
    }
  }

  void end_run(SimJob& job, TimeMs t) {
    Run& run = job.run;
    if (run.over) return;
    run.over = true;
    TimeMs billed_end = std::min(run.billed_end, t);
    job.gpu_ms += static_cast<int64_t>(run.slots.size()) * (billed_end - run.start);
    for (const Slot& slot : run.slots) {
      node_gpu_ms_[slot.node] += billed_end - run.start;
      auto it = given_.find({slot.node, slot.device});
      if (it != given_.end() && it->second == job.spec.id) given_.erase(it);
    }
    job.remaining_ms = std::max<TimeMs>(job.remaining_ms - (t - run.start), 1000);
  }

  // A device left (death or node removal): it leaves its job's books at once.
  void device_lost(NodeId node, int device, TimeMs t) {
    auto it = given_.find({node, device});
    if (it == given_.end()) return;
    SimJob& job = jobs_[it->second];
    job.run.billed_end = std::min(job.run.billed_end, t);
    given_.erase(it);
  }

  void handle(const Event& e) {
    TimeMs t = e.at;
    switch (e.kind) {
      case Kind::kArrive:
        s_.submit(jobs_[e.a].spec, t);
        break;
      case Kind::kCancel:
        if (s_.has_job(e.a)) apply(s_.cancel(e.a, t), t);
        break;
      case Kind::kFinish:
      case Kind::kFail: {
        SimJob& job = jobs_[e.a];
        if (job.run.over || job.run.id != e.run) break;  // that run was stopped
        end_run(job, t);
        if (e.kind == Kind::kFinish) {
          s_.job_finished(e.a, t);
        } else {
          s_.job_failed(e.a, t, "simulated failure");
        }
        break;
      }
      case Kind::kStopped: {
        SimJob& job = jobs_[e.a];
        if (job.run.over || job.run.id != e.run) break;  // finished before it stopped
        end_run(job, t);
        s_.job_stopped(e.a, t);
        break;
      }
      case Kind::kNodeDeath:
        if (!present_.count(e.a)) break;
        for (const DeviceInfo& d : pool_[e.a].devices) device_lost(e.a, d.index, t);
        apply(s_.remove_node(e.a, t), t);
        present_.erase(e.a);
        push(t + rand(30, 600) * 1000, Kind::kNodeReturn, e.a);
        break;
      case Kind::kNodeReturn:
        add_node_now(pool_[e.a], t);
        break;
      case Kind::kReclaim:
      case Kind::kDeviceDeath:
        if (!present_.count(e.a)) break;
        if (e.kind == Kind::kDeviceDeath) device_lost(e.a, e.b, t);
        lent_[{e.a, static_cast<int>(e.b)}] = false;
        apply(s_.set_device_availability(e.a, e.b, e.kind == Kind::kReclaim ? Availability::kReclaimed
                                                                          : Availability::kDead, t),
              t);
        push(t + rand(10, 900) * 1000, Kind::kDeviceReturn, e.a, e.b);
        break;
      case Kind::kDeviceReturn:
        if (!present_.count(e.a)) break;  // came back with its node
        lent_[{e.a, static_cast<int>(e.b)}] = true;
        apply(s_.set_device_availability(e.a, e.b, Availability::kLent, t), t);
        break;
    }
  }

  void mix(uint64_t value) {
    report_.decisions_hash = (report_.decisions_hash ^ value) * 1099511628211ull;
  }

  void apply(const std::vector<Decision>& decisions, TimeMs t) {
    for (const Decision& d : decisions) {
      mix(static_cast<uint64_t>(t));
      mix(static_cast<uint64_t>(d.job) * 2 + (d.action == Decision::Action::kStop));
      for (const Slot& slot : d.placement.ranks) mix(static_cast<uint64_t>(slot.node) * 64 + slot.device);
      SimJob& job = jobs_[d.job];
      if (d.action == Decision::Action::kStop) {
        ++report_.stops;
        EXPECT_FALSE(job.run.over) << "kStop for job " << d.job << ", which is not running";
        push(t + rand(500, 3000), Kind::kStopped, d.job, 0, job.run.id);
        continue;
      }
      ++report_.starts;
      report_.backfilled += d.reason.find("backfilled") != std::string::npos;
      EXPECT_TRUE(job.run.over) << "job " << d.job << " started twice";
      EXPECT_FALSE(job.impossible) << "job " << d.job << " cannot fit the pool yet started";
      for (const Slot& slot : d.placement.ranks) {
        ASSERT_TRUE(present_.count(slot.node)) << "job " << d.job << " placed on absent node " << slot.node;
        ASSERT_TRUE((lent_[{slot.node, slot.device}]))
            << "job " << d.job << " placed on node " << slot.node << " device " << slot.device
            << ", which its owner has not lent";
        auto [it, fresh] = given_.insert({{slot.node, slot.device}, d.job});
        ASSERT_TRUE(fresh) << "node " << slot.node << " device " << slot.device << " given to job "
                           << d.job << " while job " << it->second << " holds it";
      }
      check_gang(job.spec, d.placement);
      if (job.run.id != 0) ++report_.restarts;
      job.run = Run{++run_ids_, t, kNever, d.placement.ranks, false};
      TimeMs runtime = job.remaining_ms;
      if (chance(0.01)) {
        push(t + runtime / 2, Kind::kFail, d.job, 0, job.run.id);
      } else {
        push(t + runtime, Kind::kFinish, d.job, 0, job.run.id);
      }
    }
  }

  void check_gang(const JobSpec& spec, const Placement& p) {
    int n = static_cast<int>(p.ranks.size());
    EXPECT_TRUE(n >= spec.min_gpus && n <= spec.max_gpus && n % spec.tp_size == 0)
        << "job " << spec.id << " got " << n << " GPUs, asked " << spec.min_gpus << ".."
        << spec.max_gpus << " in groups of " << spec.tp_size;
    for (int r = 0; r < n; ++r) {
      const Slot& slot = p.ranks[r];
      const DeviceInfo* dev = nullptr;
      for (const DeviceInfo& d : pool_[slot.node].devices) {
        if (d.index == slot.device) dev = &d;
      }
      ASSERT_NE(dev, nullptr);
      EXPECT_GE(dev->memory_bytes, spec.memory_per_gpu_bytes) << "job " << spec.id;
      if (!spec.device_kind.empty()) {
        EXPECT_EQ(dev->kind, spec.device_kind) << "job " << spec.id;
      }
      if (spec.tp_size > 1) {
        EXPECT_EQ(dev->link, Link::kPcie) << "job " << spec.id << ": tensor-parallel rank on USB3";
        EXPECT_EQ(slot.node, p.ranks[r - r % spec.tp_size].node)
            << "job " << spec.id << ": tensor-parallel group spans nodes";
      }
    }
  }

  void check_end() {
    expect_consistent(s_);
    Ledger ledger = s_.ledger();
    std::map<std::string, int64_t> ledger_jobs, ledger_tenants, ledger_nodes;
    for (const auto& row : ledger.jobs) ledger_jobs[row.key] = row.usage.gpu_ms;
    for (const auto& row : ledger.tenants) ledger_tenants[row.key] = row.usage.gpu_ms;
    for (const auto& row : ledger.nodes) ledger_nodes[row.key] = row.usage.gpu_ms;
    std::map<std::string, int64_t> tenants;
    for (auto& [id, job] : jobs_) {
      const JobRecord& record = s_.job(id);
      switch (record.state) {
        case JobState::kFinished: ++report_.finished; break;
        case JobState::kFailed: ++report_.failed; break;
        case JobState::kCancelled: ++report_.cancelled; break;
        case JobState::kQueued: {
          ++report_.too_big;
          std::string why = s_.describe_wait(id);
          EXPECT_NE(why.find("the pool has"), std::string::npos) << "job " << id << " starved: " << why;
          break;
        }
        default:
          ADD_FAILURE() << "job " << id << " still " << to_string(record.state) << " at the end";
      }
      EXPECT_EQ(ledger_jobs[std::to_string(id)], job.gpu_ms) << "job " << id;
      tenants[job.spec.tenant] += job.gpu_ms;
      report_.gpu_ms += job.gpu_ms;
    }
    for (const auto& [tenant, gpu_ms] : tenants) EXPECT_EQ(ledger_tenants[tenant], gpu_ms) << tenant;
    for (const auto& [node, gpu_ms] : node_gpu_ms_) {
      EXPECT_EQ(ledger_nodes[std::to_string(node)], gpu_ms) << "node " << node;
    }
    EXPECT_EQ(ledger.total.gpu_ms, report_.gpu_ms);
    for (auto& [id, job] : jobs_) {
      JobState state = s_.job(id).state;
      if (job.impossible) {
        EXPECT_TRUE(state == JobState::kQueued || state == JobState::kCancelled)
            << "job " << id << " could not fit the pool, yet is " << to_string(state);
      }
    }
  }

  SimulationParams p_;
  std::mt19937_64 rng_;
  Scheduler s_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t seq_ = 0;
  int64_t run_ids_ = 0;
  int64_t ticks_ = 0;
  std::map<NodeId, NodeInfo> pool_;
  std::set<NodeId> present_;
  std::map<std::pair<NodeId, int>, bool> lent_;
  std::map<std::pair<NodeId, int>, JobId> given_;
  std::map<JobId, SimJob> jobs_;
  std::map<NodeId, int64_t> node_gpu_ms_;
  SimulationReport report_;
};

}  // namespace petaring::scheduler::testing
