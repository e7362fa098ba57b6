// Sub-group transport: the ranks of a sub-group (Communicator::split) talk over their
// parent's transport, without new connections.
//
// Terms: the root transport is the one that owns the connections (local, tcp, shm); a
// sub-group is a list of its ranks (members, in sub-group rank order); the group id is a
// non-zero number below 2^31, the same on every member, that no other group sharing a
// pair of ranks with this one uses (Communicator::split derives it from the parent's id,
// the parent's split count and the color).
//
// Sub-group rank s is root rank members[s]; a message with tag t (below 2^32) travels on
// the root with tag (group id << 32) | t, so it never meets the parent's messages (tags
// below 2^32) nor another group's. Splitting a sub-group maps its members through to the
// root again, so there is only ever one layer.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "collectives/transport.h"

namespace petaring {

// `root` must outlive the result; `members` are root ranks and include root.rank().
std::unique_ptr<Transport> make_sub_transport(Transport& root, std::vector<int> members,
                                              uint64_t group_id);

}  // namespace petaring
