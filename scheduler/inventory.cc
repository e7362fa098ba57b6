// Nodes and devices: the free-GPU index (nodes ordered by free count, so best fit and
// largest-first are walks of one ordered set), capacity counts, and the inventory events.
#include <algorithm>
#include <cstdio>

#include "runtime/check.h"
#include "runtime/error.h"
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {

int NodeRec::position(int device_index) const {
  for (size_t i = 0; i < info.devices.size(); ++i) {
    if (info.devices[i].index == device_index) return static_cast<int>(i);
  }
  return -1;
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  }
  return buf;
}

NodeRec& Scheduler::Impl::node(NodeId id) {
  auto it = nodes.find(id);
  if (it == nodes.end()) PR_FAIL(kNotFound, "scheduler: no node ", id, " in the pool");
  return it->second;
}

const NodeRec& Scheduler::Impl::node(NodeId id) const {
  auto it = nodes.find(id);
  if (it == nodes.end()) PR_FAIL(kNotFound, "scheduler: no node ", id, " in the pool");
  return it->second;
}

void Scheduler::Impl::set_free(NodeRec& rec, int free) {
  if (rec.free > 0) by_free.erase({rec.free, rec.info.id});
  free_total += free - rec.free;
  rec.free = free;
  if (free > 0) by_free.insert({free, rec.info.id});
}

void Scheduler::Impl::hold(const Slot& slot, JobId job) {
  NodeRec& rec = node(slot.node);
  int pos = rec.position(slot.device);
  PR_CHECK_GE(pos, 0) << "node " << slot.node << " device " << slot.device;
  PR_CHECK_EQ(rec.holder[pos], 0) << "node " << slot.node << " device " << slot.device
                                  << " is held already; job " << job << " wants it too";
  bool was_free = rec.usable(pos);
  rec.holder[pos] = job;
  if (was_free) set_free(rec, rec.free - 1);
}

void Scheduler::Impl::release(const Slot& slot) {
  NodeRec& rec = node(slot.node);
  int pos = rec.position(slot.device);
  PR_CHECK_GE(pos, 0) << "node " << slot.node << " device " << slot.device;
  PR_CHECK_NE(rec.holder[pos], 0) << "node " << slot.node << " device " << slot.device;
  rec.holder[pos] = 0;
  if (rec.info.devices[pos].availability == Availability::kLent) set_free(rec, rec.free + 1);
}

bool Scheduler::Impl::eligible(const NodeRec& rec, size_t pos, const Request& req,
                               bool use_reserved) const {
  const DeviceInfo& d = rec.info.devices[pos];
  return rec.usable(pos) && d.memory_bytes >= req.memory &&
         (req.kind->empty() || d.kind == *req.kind) && (!req.pcie_only || d.link == Link::kPcie) &&
         (use_reserved || !rec.reserved[pos]);
}

int Scheduler::Impl::units_on(const NodeRec& rec, const Request& req, bool use_reserved) const {
  int count = 0;
  for (size_t i = 0; i < rec.info.devices.size(); ++i) count += eligible(rec, i, req, use_reserved);
  return count / req.unit;
}

namespace {

// One node's share of a capacity count (see Capacity).
Capacity node_capacity(const NodeRec& rec, int64_t memory, const std::string& kind, int unit) {
  Capacity cap;
  for (const DeviceInfo& d : rec.info.devices) {
    bool fits = d.memory_bytes >= memory && (kind.empty() || d.kind == kind) &&
                (unit == 1 || d.link == Link::kPcie);
    if (!fits) continue;
    if (d.availability == Availability::kLent) ++cap.gpus;
    if (d.availability == Availability::kReclaimed) ++cap.reclaimed;
  }
  cap.units = cap.gpus / unit;
  return cap;
}

}  // namespace

Capacity Scheduler::Impl::capacity(const Request& req) {
  auto key = std::make_tuple(req.memory, *req.kind, req.unit);
  auto it = capacity_cache.find(key);
  if (it != capacity_cache.end()) return it->second;
  Capacity cap = count_capacity(req);
  capacity_cache.emplace(key, cap);
  return cap;
}

// Keeps the cached counts true across an inventory change: called with -1 before a node
// changes and +1 after.
void Scheduler::Impl::adjust_capacity(const NodeRec& rec, int sign) {
  for (auto& [key, cap] : capacity_cache) {
    Capacity part = node_capacity(rec, std::get<0>(key), std::get<1>(key), std::get<2>(key));
    cap.units += sign * part.units;
    cap.gpus += sign * part.gpus;
    cap.reclaimed += sign * part.reclaimed;
  }
}

Capacity Scheduler::Impl::count_capacity(const Request& req) const {
  Capacity cap;
  for (const auto& [id, rec] : nodes) {  // order does not matter: sums only
    Capacity part = node_capacity(rec, req.memory, *req.kind, req.unit);
    cap.units += part.units;
    cap.gpus += part.gpus;
    cap.reclaimed += part.reclaimed;
  }
  return cap;
}

// Applies a new availability to one device; a held device under a job stops that job.
std::vector<Decision> Scheduler::Impl::device_changed(NodeRec& rec, size_t pos,
                                                      Availability availability) {
  std::vector<Decision> out;
  DeviceInfo& d = rec.info.devices[pos];
  if (d.availability == availability) return out;
  JobId holder_id = rec.holder[pos];
  bool was_free = rec.usable(pos);
  adjust_capacity(rec, -1);
  d.availability = availability;
  adjust_capacity(rec, +1);
  if (holder_id == 0) {
    set_free(rec, rec.free + (rec.usable(pos) ? 1 : 0) - (was_free ? 1 : 0));
    return out;
  }
  JobRecord& j = job(holder_id);
  if (availability == Availability::kDead) {
    settle(j);
    stop_billing(j);
    rec.holder[pos] = 0;  // a dead device is not free: set_free is unchanged
    Slot slot{rec.info.id, d.index};
    j.held.erase(std::remove(j.held.begin(), j.held.end(), slot), j.held.end());
    if (j.state == JobState::kRunning || j.stop_cause != StopCause::kLost) {
      std::string why = str_cat("device ", d.index, " of node ", rec.info.id, " (", rec.info.name,
                                ") died: restart from the last checkpoint");
      if (j.state == JobState::kRunning) {
        out.push_back(stop(j, StopCause::kLost, why));
      } else if (j.stop_cause == StopCause::kReclaimed) {
        j.stop_cause = StopCause::kLost;  // already stopping; no checkpoint to wait for
        j.end_reason = why;
      }
    }
  } else if (availability == Availability::kReclaimed && j.state == JobState::kRunning) {
    out.push_back(stop(j, StopCause::kReclaimed,
                       str_cat("the owner of node ", rec.info.id, " (", rec.info.name,
                               ") reclaimed device ", d.index,
                               ": checkpoint, stop, then the job is placed again")));
  }
  return out;
}

std::vector<Decision> Scheduler::add_node(const NodeInfo& info, TimeMs now) {
  impl_->advance(now, "add_node");
  if (info.id <= 0) PR_FAIL(kInvalidArgument, "scheduler: node id must be > 0, got ", info.id);
  for (size_t i = 0; i < info.devices.size(); ++i) {
    const DeviceInfo& d = info.devices[i];
    if (d.memory_bytes < 0 || d.flops_per_s < 0) {
      PR_FAIL(kInvalidArgument, "scheduler: node ", info.id, " (", info.name, ") device ", d.index,
              ": memory and speed must be >= 0");
    }
    for (size_t k = 0; k < i; ++k) {
      if (info.devices[k].index == d.index) {
        PR_FAIL(kInvalidArgument, "scheduler: node ", info.id, " (", info.name,
                ") lists device index ", d.index, " twice");
      }
    }
  }
  auto it = impl_->nodes.find(info.id);
  if (it != impl_->nodes.end()) {
    for (size_t i = 0; i < it->second.holder.size(); ++i) {
      if (it->second.holder[i] != 0) {
        PR_FAIL(kFailedPrecondition, "scheduler: node ", info.id, " (", info.name,
                ") registers again while job ", it->second.holder[i], " still holds device ",
                it->second.info.devices[i].index, "; report that job stopped first");
      }
    }
    impl_->set_free(it->second, 0);
    impl_->adjust_capacity(it->second, -1);
    impl_->nodes.erase(it);
  }
  NodeRec rec;
  rec.info = info;
  rec.holder.assign(info.devices.size(), 0);
  rec.reserved.assign(info.devices.size(), 0);
  NodeRec& stored = impl_->nodes.emplace(info.id, std::move(rec)).first->second;
  int free = 0;
  for (size_t i = 0; i < info.devices.size(); ++i) free += stored.usable(i);
  impl_->set_free(stored, free);
  impl_->adjust_capacity(stored, +1);
  return {};
}

std::vector<Decision> Scheduler::remove_node(NodeId id, TimeMs now) {
  impl_->advance(now, "remove_node");
  NodeRec& rec = impl_->node(id);
  std::vector<Decision> out;
  for (size_t i = 0; i < rec.info.devices.size(); ++i) {
    auto more = impl_->device_changed(rec, i, Availability::kDead);
    out.insert(out.end(), more.begin(), more.end());
  }
  impl_->set_free(rec, 0);
  impl_->adjust_capacity(rec, -1);
  impl_->nodes.erase(id);
  for (Decision& d : out) d.reason = str_cat("node ", id, " left the pool: restart from the last checkpoint");
  return out;
}

std::vector<Decision> Scheduler::set_device_availability(NodeId id, int device,
                                                         Availability availability, TimeMs now) {
  impl_->advance(now, "set_device_availability");
  NodeRec& rec = impl_->node(id);
  int pos = rec.position(device);
  if (pos < 0) {
    PR_FAIL(kNotFound, "scheduler: node ", id, " (", rec.info.name, ") has no device ", device);
  }
  return impl_->device_changed(rec, pos, availability);
}

std::vector<Decision> Scheduler::set_node_availability(NodeId id, Availability availability,
                                                       TimeMs now) {
  impl_->advance(now, "set_node_availability");
  NodeRec& rec = impl_->node(id);
  std::vector<Decision> out;
  for (size_t i = 0; i < rec.info.devices.size(); ++i) {
    auto more = impl_->device_changed(rec, i, availability);
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

}  // namespace petaring::scheduler
