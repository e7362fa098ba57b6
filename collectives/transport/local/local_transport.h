// In-process transport: the ranks of a group are threads of one process.
//
// All transports of a group share one mailbox keyed by (source, destination, tag). A send
// copies its bytes at once (into the matching posted receive, or into a queued message),
// so isend requests are complete when returned; a receive completes when its message has
// been copied into its buffer. Messages of one key arrive in send order, and receives of
// one key are matched in the order they were posted.
#pragma once

#include <memory>
#include <vector>

#include "collectives/transport.h"

namespace petaring {

// Creates the transports of a group of `size` ranks, element i being rank i. Each may be
// used from its own thread (one thread at a time per transport); they may be destroyed in
// any order.
std::vector<std::unique_ptr<Transport>> make_local_transports(int size);

}  // namespace petaring
