// Helpers for the scheduler tests: building nodes and checking the invariants every
// state must keep (no GPU held twice, gangs whole, groups on one node, ledgers adding up).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "scheduler/scheduler.h"

namespace petaring::scheduler::testing {

inline constexpr int64_t kGiB = int64_t{1} << 30;

inline NodeInfo make_node(NodeId id, int devices, int64_t memory = 16 * kGiB,
                          Link link = Link::kPcie, std::string kind = "cpu",
                          double flops_per_s = 1e12) {
  NodeInfo node;
  node.id = id;
  node.name = "host" + std::to_string(id);
  for (int i = 0; i < devices; ++i) {
    node.devices.push_back({i, kind, memory, link, flops_per_s, Availability::kLent});
  }
  return node;
}

inline JobSpec make_job(JobId id, int gpus, std::string tenant = "alice", int priority = 0,
                        TimeMs runtime = 0) {
  JobSpec spec;
  spec.id = id;
  spec.tenant = std::move(tenant);
  spec.priority = priority;
  spec.min_gpus = spec.max_gpus = gpus;
  spec.expected_runtime_ms = runtime;
  return spec;
}

// The kStart decision for `job`, if any (a copy: callers often pass a temporary).
inline std::optional<Decision> find_start(const std::vector<Decision>& decisions, JobId job) {
  for (const Decision& d : decisions) {
    if (d.action == Decision::Action::kStart && d.job == job) return d;
  }
  return std::nullopt;
}

inline std::set<NodeId> nodes_of(const Placement& p) {
  std::set<NodeId> out;
  for (const Slot& s : p.ranks) out.insert(s.node);
  return out;
}

// Checks that a placement is a whole gang that honours the job's spec: size in
// [min, max] and a multiple of tp_size, distinct GPUs, enough memory, right kind, every
// tensor-parallel group on one node over PCIe.
inline void expect_valid_placement(const SchedulerState& state, const JobSpec& spec,
                                   const Placement& p) {
  int n = static_cast<int>(p.ranks.size());
  EXPECT_GE(n, spec.min_gpus) << "job " << spec.id;
  EXPECT_LE(n, spec.max_gpus) << "job " << spec.id;
  EXPECT_EQ(n % spec.tp_size, 0) << "job " << spec.id;
  std::map<NodeId, const NodeInfo*> nodes;
  for (const NodeInfo& node : state.nodes) nodes[node.id] = &node;
  std::set<std::pair<NodeId, int>> seen;
  for (int r = 0; r < n; ++r) {
    const Slot& s = p.ranks[r];
    EXPECT_TRUE(seen.insert({s.node, s.device}).second) << "job " << spec.id << " rank " << r;
    ASSERT_TRUE(nodes.count(s.node)) << "job " << spec.id << " on unknown node " << s.node;
    const DeviceInfo* dev = nullptr;
    for (const DeviceInfo& d : nodes[s.node]->devices) {
      if (d.index == s.device) dev = &d;
    }
    ASSERT_NE(dev, nullptr) << "job " << spec.id << " rank " << r;
    EXPECT_GE(dev->memory_bytes, spec.memory_per_gpu_bytes) << "job " << spec.id;
    if (!spec.device_kind.empty()) {
      EXPECT_EQ(dev->kind, spec.device_kind);
    }
    if (spec.tp_size > 1) {
      EXPECT_EQ(dev->link, Link::kPcie) << "job " << spec.id << " rank " << r << " tp group on USB3";
      EXPECT_EQ(s.node, p.ranks[r - r % spec.tp_size].node)
          << "job " << spec.id << " tp group " << r / spec.tp_size << " spans nodes";
    }
  }
}

// Invariants over the whole state: every held GPU belongs to exactly one running or
// stopping job, a running job holds exactly its placement, gangs are whole, and the job,
// tenant and node ledgers add up to the same GPU-ms.
inline void expect_consistent(const Scheduler& scheduler) {
  SchedulerState state = scheduler.snapshot();
  std::map<std::pair<NodeId, int>, JobId> held_by;
  for (const JobRecord& j : state.jobs) {
    bool active = j.state == JobState::kRunning || j.state == JobState::kStopping;
    if (!active) {
      EXPECT_TRUE(j.held.empty()) << "job " << j.spec.id << " is " << to_string(j.state);
      continue;
    }
    if (j.state == JobState::kRunning) {
      EXPECT_EQ(j.held, j.placement.ranks) << "running job " << j.spec.id;
      expect_valid_placement(state, j.spec, j.placement);
    }
    for (const Slot& s : j.held) {
      auto [it, inserted] = held_by.insert({{s.node, s.device}, j.spec.id});
      EXPECT_TRUE(inserted) << "node " << s.node << " device " << s.device << " held by jobs "
                            << it->second << " and " << j.spec.id;
    }
  }
  for (const NodeInfo& node : state.nodes) {
    for (const DeviceInfo& d : node.devices) {
      JobId holder = scheduler.holder(node.id, d.index);
      auto it = held_by.find({node.id, d.index});
      EXPECT_EQ(holder, it == held_by.end() ? 0 : it->second)
          << "node " << node.id << " device " << d.index;
    }
  }
  Ledger ledger = scheduler.ledger();
  int64_t jobs = 0, tenants = 0, nodes = 0;
  for (const auto& row : ledger.jobs) jobs += row.usage.gpu_ms;
  for (const auto& row : ledger.tenants) tenants += row.usage.gpu_ms;
  for (const auto& row : ledger.nodes) nodes += row.usage.gpu_ms;
  EXPECT_EQ(jobs, ledger.total.gpu_ms);
  EXPECT_EQ(tenants, jobs);
  EXPECT_EQ(nodes, jobs);
}

}  // namespace petaring::scheduler::testing
