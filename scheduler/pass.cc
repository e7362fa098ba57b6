// The scheduling pass (tick).
//
// Order: priority (higher first); within a priority, tenants take turns by GPU-ms used so
// far (fewer first: fair share), each job started in the pass charging its tenant its
// expected GPU-ms; within a tenant, by submit time then id. A job re-queued
// after a reclaim or a loss keeps its submit time, so it goes back near the front.
//
// EASY backfill: the first job that cannot start is the *head*. It gets a reservation:
// running jobs are released in the order of their expected ends (start + expected
// runtime; unknown ends last) until the head fits; that moment is the *shadow time* and
// the GPUs it would get are *reserved* (those free now are marked). Every later job may
// start now on unreserved GPUs; it may use reserved ones only when its own expected
// runtime ends by the shadow time, so as long as estimates hold it never delays the
// head. Jobs the pool cannot hold at all (more matching GPUs than are lent) never
// become the head: they wait with kPoolTooSmall and block nobody.
//
// Cost: a failed placement is remembered for the rest of the pass (per request shape),
// and the pass stops as soon as no GPU is free, so a long queue costs little per tick.
#include <algorithm>

#include "runtime/check.h"
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {
namespace {

// What a job started in a pass charges its tenant for the rest of that pass, per GPU,
// when it has no runtime estimate.
constexpr TimeMs kFairShareChargeMs = 600'000;

// Placements that failed during this pass. The free set only shrinks within a pass, so
// a failure also rules out every request at least as hard: same unit and reserved-GPU
// access (or less), same or more memory, same kind (or any kind failed), as many units.
class Failures {
 public:
  bool known(const Request& req, bool use_reserved) const {
    for (const Entry& f : entries_) {
      if (f.unit == req.unit && (f.use_reserved || !use_reserved) && f.memory <= req.memory &&
          f.min_units <= req.min_units && (f.kind.empty() || f.kind == *req.kind)) {
        return true;
      }
    }
    return false;
  }
  void add(const Request& req, bool use_reserved) {
    entries_.push_back({req.unit, use_reserved, req.memory, req.min_units, *req.kind});
  }

 private:
  struct Entry {
    int unit;
    bool use_reserved;
    int64_t memory;
    int min_units;
    std::string kind;
  };
  std::vector<Entry> entries_;
};

}  // namespace

std::vector<Decision> Scheduler::tick(TimeMs now) {
  impl_->advance(now, "tick");
  return impl_->pass();
}

void Scheduler::Impl::clear_reservation() {
  for (const Slot& slot : reserved) {
    auto it = nodes.find(slot.node);
    if (it == nodes.end()) continue;
    int pos = it->second.position(slot.device);
    if (pos >= 0) it->second.reserved[pos] = 0;
  }
  reserved.clear();
}

// Releases running jobs in the order of their expected ends, keeping count of the units
// the head could use (only the nodes a released job touched are counted again), and
// places the head once, when enough units are free. Every hold is then restored.
void Scheduler::Impl::reserve_for(const JobRecord& head_job, const Request& req, TimeMs& shadow) {
  shadow = kNever;
  std::unordered_map<NodeId, int> units;
  int total = 0;
  for (const auto& [free, id] : by_free) {  // nodes with nothing free hold 0 units
    int u = units_on(nodes.at(id), req, true);
    units[id] = u;
    total += u;
  }
  std::vector<std::pair<JobId, std::vector<Slot>>> released;
  std::optional<Placement> found;
  for (const auto& [end, id] : ends) {
    const JobRecord& r = jobs.at(id);
    released.emplace_back(id, r.held);
    for (const Slot& slot : r.held) release(slot);
    for (size_t k = 0; k < r.held.size(); ++k) {
      NodeId node_id = r.held[k].node;
      if (k > 0 && r.held[k - 1].node == node_id) continue;  // held is sorted by node
      int u = units_on(nodes.at(node_id), req, true);
      total += u - units[node_id];
      units[node_id] = u;
    }
    if (total >= req.min_units) {
      found = place(req, true);
      PR_CHECK(found.has_value()) << "job " << head_job.spec.id << ": " << total << " units free";
      shadow = std::max(end, now);
      break;
    }
  }
  for (const auto& [id, slots] : released) {
    for (const Slot& slot : slots) hold(slot, id);
  }
  if (!found) return;
  for (const Slot& slot : found->ranks) {
    NodeRec& rec = nodes.at(slot.node);
    int pos = rec.position(slot.device);
    if (rec.usable(pos)) {
      rec.reserved[pos] = 1;
      reserved.push_back(slot);
    }
  }
}

std::vector<Decision> Scheduler::Impl::pass() {
  clear_reservation();
  std::vector<Decision> out;
  Failures failed;
  head = 0;
  TimeMs shadow = kNever;

  auto try_place = [&](const Request& req, bool use_reserved) -> std::optional<Placement> {
    if (failed.known(req, use_reserved)) return std::nullopt;
    auto placement = place(req, use_reserved);
    if (!placement) failed.add(req, use_reserved);
    return placement;
  };

  // Returns false when the pass is over.
  auto consider = [&](JobRecord& j) -> bool {
    Request req = request_for(j.spec);
    WaitInfo w;
    w.needs = req.min_units * req.unit;
    w.free = free_total;
    if (head == 0) {
      Capacity cap = capacity(req);
      w.exist = cap.gpus;
      w.reclaimed = cap.reclaimed;
      if (cap.units < req.min_units) {
        w.reason = WaitInfo::Reason::kPoolTooSmall;
        j.wait = w;
        return true;
      }
      if (auto placement = try_place(req, true)) {
        start(j, std::move(*placement), out, false);
        return true;
      }
      head = j.spec.id;
      reserve_for(j, req, shadow);
      w.reason = WaitInfo::Reason::kHeadOfQueue;
      w.reserved_until = shadow;
      j.wait = w;
      return options.backfill;
    }
    std::optional<Placement> placement;
    if (w.needs <= free_total) {
      placement = try_place(req, false);
      TimeMs runtime = j.spec.expected_runtime_ms;
      if (!placement && runtime > 0 && shadow != kNever && runtime <= shadow - now) {
        placement = try_place(req, true);
      }
    }
    if (placement) {
      start(j, std::move(*placement), out, true);
    } else {
      w.reason = WaitInfo::Reason::kBehindHead;
      w.head = head;
      j.wait = w;
    }
    return true;
  };

  // Within a priority, tenants take turns: the next job comes from the tenant with the
  // least usage, where a job started in this pass charges its tenant its GPUs x its
  // expected runtime (kFairShareChargeMs when unknown) so that one tenant's backlog does
  // not take every free GPU of a pass. Ties: earlier submission, then lower id.
  std::vector<int> priorities;
  for (const auto& [priority, tenants] : queue) priorities.push_back(priority);
  for (int priority : priorities) {
    auto level = queue.find(priority);
    if (level == queue.end()) continue;
    std::vector<std::vector<std::pair<TimeMs, JobId>>> lists;
    std::set<std::tuple<int64_t, TimeMs, JobId, size_t, size_t>> turns;  // usage, next job, list, pos
    for (const auto& [tenant, waiting] : level->second) {
      lists.emplace_back(waiting.begin(), waiting.end());
      const auto& first = lists.back().front();
      turns.insert({tenant_gpu_ms(tenant), first.first, first.second, lists.size() - 1, 0});
    }
    while (!turns.empty()) {
      auto [usage, submitted, id, list, pos] = *turns.begin();
      turns.erase(turns.begin());
      if (free_total == 0) return out;
      JobRecord& j = jobs.at(id);
      if (!consider(j)) return out;
      if (j.state == JobState::kRunning) {
        TimeMs runtime = j.spec.expected_runtime_ms > 0 ? j.spec.expected_runtime_ms : kFairShareChargeMs;
        usage += static_cast<int64_t>(j.placement.ranks.size()) * runtime;
      }
      if (++pos < lists[list].size()) {
        const auto& next = lists[list][pos];
        turns.insert({usage, next.first, next.second, list, pos});
      }
    }
  }
  return out;
}

}  // namespace petaring::scheduler
