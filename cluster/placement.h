// Placement for the coordinator: the narrow seam where scheduler/ will plug in.
//
// place_gang() is all-or-nothing: it returns a device for every one of `gpus` ranks or
// nothing. It packs ranks onto as few nodes as possible: the fullest node that fits the
// whole gang (best fit), else the nodes with the most free devices first. Ranks are
// numbered node by node, so a node's ranks are consecutive (local ranks 0..k-1).
// Pure and deterministic (ties go to the lower node id).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace petaring::cluster {

struct FreeDevices {
  int64_t node_id = 0;
  std::vector<uint32_t> devices;  // free device indices on this node, ascending
};

struct Slot {
  int64_t node_id = 0;
  uint32_t device_index = 0;
};

// Slot r is rank r's.
std::optional<std::vector<Slot>> place_gang(const std::vector<FreeDevices>& free, uint32_t gpus);

}  // namespace petaring::cluster
