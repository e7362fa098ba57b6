// place_gang: all or nothing, packed onto few nodes, deterministic.
#include <gtest/gtest.h>

#include "cluster/placement.h"

namespace petaring::cluster {
namespace {

std::string text(const std::optional<std::vector<Slot>>& slots) {
  if (!slots) return "none";
  std::string out;
  for (const Slot& s : *slots) out += std::to_string(s.node_id) + ":" + std::to_string(s.device_index) + " ";
  return out;
}

TEST(PlaceGang, AllOrNothing) {
  std::vector<FreeDevices> free = {{1, {0, 1}}, {2, {1}}};
  EXPECT_EQ(text(place_gang(free, 4)), "none");
  EXPECT_EQ(text(place_gang(free, 0)), "none");
  EXPECT_EQ(text(place_gang(free, 3)), "1:0 1:1 2:1 ");
}

TEST(PlaceGang, BestFitOnOneNode) {
  std::vector<FreeDevices> free = {{1, {0, 1, 2, 3}}, {2, {0, 1}}, {3, {0, 1, 2}}};
  EXPECT_EQ(text(place_gang(free, 2)), "2:0 2:1 ");     // the fullest node that fits
  EXPECT_EQ(text(place_gang(free, 3)), "3:0 3:1 3:2 ");
  EXPECT_EQ(text(place_gang(free, 1)), "2:0 ");
}

TEST(PlaceGang, LargestNodesFirstWhenSpanning) {
  std::vector<FreeDevices> free = {{1, {0}}, {2, {0, 1, 2}}, {3, {}}, {4, {0, 1}}};
  EXPECT_EQ(text(place_gang(free, 5)), "2:0 2:1 2:2 4:0 4:1 ");
  EXPECT_EQ(text(place_gang(free, 6)), "2:0 2:1 2:2 4:0 4:1 1:0 ");
}

}  // namespace
}  // namespace petaring::cluster
