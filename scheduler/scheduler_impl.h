// Internal state of the Scheduler (not part of the API). Split by concern:
//   scheduler.cc   construction, queries, job events, snapshot/restore
//   inventory.cc   nodes and devices, the free-GPU index, capacity counts
//   placement.cc   gang placement (best fit, fewest nodes, tensor-parallel groups)
//   pass.cc        the scheduling pass: order, fair share, EASY backfill, reservation
//   ledger.cc      usage accrual and the ledger
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "runtime/error.h"
#include "scheduler/scheduler.h"

namespace petaring::scheduler {

struct NodeRec {
  NodeInfo info;
  std::vector<JobId> holder;   // per position in info.devices; 0 = free
  std::vector<char> reserved;  // per position: reserved for the head job this pass
  int free = 0;                // devices lent and not held

  int position(int device_index) const;  // -1 when absent
  bool usable(size_t pos) const {
    return info.devices[pos].availability == Availability::kLent && holder[pos] == 0;
  }
};

// What a job asks of the placer, in units (a unit = one tensor-parallel group, or one
// GPU when tp_size == 1).
struct Request {
  int min_units = 1;
  int max_units = 1;
  int unit = 1;
  int64_t memory = 0;
  const std::string* kind = nullptr;  // empty = any
  bool pcie_only = false;
};
Request request_for(const JobSpec& spec);

struct Capacity {
  int units = 0;      // units that fit on lent devices (held or not)
  int gpus = 0;       // lent matching devices
  int reclaimed = 0;  // matching devices reclaimed by their owners
};

struct Scheduler::Impl {
  SchedulerOptions options;
  TimeMs now = 0;

  // ---- inventory (inventory.cc) ----
  std::unordered_map<NodeId, NodeRec> nodes;
  std::set<std::pair<int, NodeId>> by_free;  // (free, id) of nodes with free > 0
  int free_total = 0;
  std::map<std::tuple<int64_t, std::string, int>, Capacity> capacity_cache;

  NodeRec& node(NodeId id);
  const NodeRec& node(NodeId id) const;
  void set_free(NodeRec& rec, int free);
  void hold(const Slot& slot, JobId job);
  void release(const Slot& slot);
  bool eligible(const NodeRec& rec, size_t pos, const Request& req, bool use_reserved) const;
  int units_on(const NodeRec& rec, const Request& req, bool use_reserved) const;
  Capacity capacity(const Request& req);  // cached, kept true by adjust_capacity
  void adjust_capacity(const NodeRec& rec, int sign);
  Capacity count_capacity(const Request& req) const;
  std::vector<Decision> device_changed(NodeRec& rec, size_t pos, Availability availability);

  // ---- placement (placement.cc) ----
  std::optional<Placement> place(const Request& req, bool use_reserved) const;
  void take_units(const NodeRec& rec, const Request& req, bool use_reserved, int units,
                  std::vector<Slot>& out) const;

  // ---- jobs and queue (scheduler.cc, pass.cc) ----
  std::unordered_map<JobId, JobRecord> jobs;
  // priority (descending) -> tenant -> (submitted, id)
  std::map<int, std::map<std::string, std::set<std::pair<TimeMs, JobId>>>, std::greater<int>>
      queue;
  std::set<std::pair<TimeMs, JobId>> ends;  // running/stopping jobs by expected end
  std::vector<Slot> reserved;               // this pass's reservation
  JobId head = 0;                           // this pass's head job (0 = none)

  JobRecord& job(JobId id);
  void advance(TimeMs t, const char* event);
  void enqueue(JobRecord& job);
  void dequeue(const JobRecord& job);
  TimeMs expected_end(const JobRecord& job) const;
  void start(JobRecord& job, Placement placement, std::vector<Decision>& out, bool backfilled);
  void free_job(JobRecord& job);  // settle, release held GPUs, leave `ends`
  Decision stop(JobRecord& job, StopCause cause, std::string reason);
  std::vector<Decision> pass();
  void reserve_for(const JobRecord& head_job, const Request& req, TimeMs& shadow);
  void clear_reservation();

  // ---- ledger (ledger.cc) ----
  std::map<std::string, Usage> tenant_usage;
  std::map<NodeId, Usage> node_usage;
  // Jobs whose held GPUs accrue usage, with where the usage goes (built when billing
  // starts; a job's held GPUs only change when billing stops).
  struct Billing {
    struct Part {
      Usage* node;  // into node_usage (std::map: stable addresses)
      int gpus;
      double flops_per_s;
    };
    Usage* tenant = nullptr;
    std::vector<Part> parts;
    double flops_per_s = 0;
  };
  std::map<JobId, Billing> billing;
  // Per tenant, what its billing jobs accrue but have not settled: usage at time t is
  // tenant_usage.gpu_ms + gpus * t - since_sum (so fair share needs no settling).
  struct Accruing {
    int64_t gpus = 0;
    int64_t since_sum = 0;  // sum over billing jobs of GPUs held x billed_until
  };
  std::map<std::string, Accruing> accruing;
  int64_t tenant_gpu_ms(const std::string& tenant) const;  // up to now, settled or not

  void start_billing(JobRecord& job);

  void settle(JobRecord& job);  // accrue job's usage up to now
  void stop_billing(JobRecord& job);
  double flops_rate(const Slot& slot) const;
};

std::string format_bytes(int64_t bytes);

}  // namespace petaring::scheduler
