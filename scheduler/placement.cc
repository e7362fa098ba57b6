// Gang placement.
//
// Terms: a *unit* is what must sit together on one node: one tensor-parallel group of
// tp_size GPUs (on PCIe devices), or a single GPU when tp_size == 1. A node's *units* for
// a request are its eligible free devices (lent, not held, enough memory, right kind,
// PCIe when required, not reserved unless allowed) divided by the unit size.
//
// Algorithm (all-or-nothing; nothing is held until the whole placement is found):
//   1. One node, best fit: walk the nodes by free count upward from the first with at
//      least max_units * unit free GPUs; the first with enough units takes the job. The
//      fullest node that fits is used, so empty nodes stay empty for large jobs.
//   2. Several nodes, largest first: walk the nodes by free count downward, taking all
//      of a node's units, until the rest of the job fits on one node; that rest goes to
//      the best-fitting node among those not taken (step 1 on the remainder). Taking the
//      largest first minimizes the number of nodes; the best-fit tail limits fragments.
//   3. Elastic jobs (min < max) ask for max; when the pool runs out first, whatever was
//      gathered is accepted if it reaches min.
// On a node, devices are taken USB3 first, then by memory ascending, then by index, so
// PCIe devices and large memories stay free for jobs that need them.
// Ranks are finally ordered by (node id, device index); every node contributes whole
// units, so each tensor-parallel group is a run of consecutive ranks on one node.
#include <algorithm>

#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {

void Scheduler::Impl::take_units(const NodeRec& rec, const Request& req, bool use_reserved,
                                 int units, std::vector<Slot>& out) const {
  std::vector<size_t> eligible;
  for (size_t i = 0; i < rec.info.devices.size(); ++i) {
    if (this->eligible(rec, i, req, use_reserved)) eligible.push_back(i);
  }
  const auto& devs = rec.info.devices;
  std::sort(eligible.begin(), eligible.end(), [&](size_t a, size_t b) {
    bool usb_a = devs[a].link == Link::kUsb3, usb_b = devs[b].link == Link::kUsb3;
    if (usb_a != usb_b) return usb_a;
    if (devs[a].memory_bytes != devs[b].memory_bytes) return devs[a].memory_bytes < devs[b].memory_bytes;
    return devs[a].index < devs[b].index;
  });
  for (int i = 0; i < units * req.unit; ++i) out.push_back({rec.info.id, devs[eligible[i]].index});
}

Request request_for(const JobSpec& spec) {
  Request req;
  req.unit = spec.tp_size;
  req.min_units = spec.min_gpus / spec.tp_size;
  req.max_units = spec.max_gpus / spec.tp_size;
  req.memory = spec.memory_per_gpu_bytes;
  req.kind = &spec.device_kind;
  req.pcie_only = spec.tp_size > 1;
  return req;
}

std::optional<Placement> Scheduler::Impl::place(const Request& req, bool use_reserved) const {
  if (free_total < req.min_units * req.unit) return std::nullopt;
  // Best-fitting single node for `units` units, skipping `taken`; 0 when none.
  auto best_fit = [&](int units, const std::vector<NodeId>& taken) -> NodeId {
    for (auto it = by_free.lower_bound({units * req.unit, 0}); it != by_free.end(); ++it) {
      if (std::find(taken.begin(), taken.end(), it->second) != taken.end()) continue;
      if (units_on(nodes.at(it->second), req, use_reserved) >= units) return it->second;
    }
    return 0;
  };
  Placement placement;
  std::vector<NodeId> taken;
  int remaining = req.max_units;
  if (NodeId id = best_fit(req.max_units, taken)) {
    take_units(nodes.at(id), req, use_reserved, req.max_units, placement.ranks);
    remaining = 0;
  }
  for (auto it = by_free.rbegin(); it != by_free.rend() && remaining > 0; ++it) {
    if (it->first < req.unit) break;  // no node further down holds a whole unit
    const NodeRec& rec = nodes.at(it->second);
    int units = units_on(rec, req, use_reserved);
    if (units == 0) continue;
    if (units >= remaining) {
      NodeId id = best_fit(remaining, taken);  // finds this node at worst
      take_units(nodes.at(id), req, use_reserved, remaining, placement.ranks);
      remaining = 0;
      break;
    }
    take_units(rec, req, use_reserved, units, placement.ranks);
    taken.push_back(rec.info.id);
    remaining -= units;
  }
  if (req.max_units - remaining < req.min_units) return std::nullopt;
  std::sort(placement.ranks.begin(), placement.ranks.end(), [](const Slot& a, const Slot& b) {
    return a.node != b.node ? a.node < b.node : a.device < b.device;
  });
  return placement;
}

}  // namespace petaring::scheduler
