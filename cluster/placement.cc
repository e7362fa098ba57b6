#include "cluster/placement.h"

#include <algorithm>

namespace petaring::cluster {

std::optional<std::vector<Slot>> place_gang(const std::vector<FreeDevices>& free, uint32_t gpus) {
  size_t total = 0;
  for (const auto& node : free) total += node.devices.size();
  if (gpus == 0 || total < gpus) return std::nullopt;
  std::vector<const FreeDevices*> order;
  for (const auto& node : free) {
    if (!node.devices.empty()) order.push_back(&node);
  }
  // Best fit: the node with the fewest free devices that still holds the whole gang.
  const FreeDevices* best = nullptr;
  for (const FreeDevices* node : order) {
    if (node->devices.size() < gpus) continue;
    if (!best || node->devices.size() < best->devices.size() ||
        (node->devices.size() == best->devices.size() && node->node_id < best->node_id)) {
      best = node;
    }
  }
  if (best) {
    order = {best};
  } else {
    std::stable_sort(order.begin(), order.end(), [](const FreeDevices* a, const FreeDevices* b) {
      if (a->devices.size() != b->devices.size()) return a->devices.size() > b->devices.size();
      return a->node_id < b->node_id;
    });
  }
  std::vector<Slot> slots;
  for (const FreeDevices* node : order) {
    for (uint32_t device : node->devices) {
      if (slots.size() == gpus) break;
      slots.push_back({node->node_id, device});
    }
  }
  return slots;
}

}  // namespace petaring::cluster
