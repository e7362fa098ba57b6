// Hierarchical allreduce over ranks grouped by host: reduce-scatter inside each host, a
// ring allreduce across hosts on the shards, allgather inside each host. Across hosts each
// rank moves only its shard (1/L of the buffer for L ranks per host), so the slow links
// carry L times less than a flat ring's.
//
// Terms:
//   host       the machine a rank runs on (Communicator::init_hosts exchanges them; tests
//              fake them). Every host must hold the same number L of ranks.
//   local rank a rank's index among the ranks of its host (by world rank); the intra-host
//              group (transport `intra`, L ranks) is the ranks of one host in local-rank
//              order.
//   inter-host group   the ranks of equal local rank, one per host in host order (transport
//              `inter`, H ranks for H hosts).
//   shard      chunk l of the intra-host ring layout (ring.h: the buffer cut into L chunks
//              as evenly as possible), owned by local rank l.
//
// Steps (all pipelined and segmented as in ring.h):
//   1. intra-host ring reduce-scatter (sum, or the op itself for max and min): local rank l
//      holds shard l reduced over its host;
//   2. inter-host allreduce of shard l among the local ranks l of every host (the ring, or
//      recursive doubling when the shard is at most `small_message_threshold` bytes);
//      for kAverage the sum is then divided by the world size;
//   3. intra-host ring allgather of the shards.
// Where the intra-host transport reaches every local peer's memory (shm with cross-memory
// attach, threads of one process), steps 1 and 3 copy once instead (direct.h's
// direct_local_allreduce: local rank l reads shard l from its host's ranks, combines it in
// the same ring order, and after step 2 writes it into their buffers).
// Determinism: shard l is combined in a fixed order (the intra ring order of ring.h on
// each host, then the inter-host algorithm's order over the host sums), and every rank
// ends with the bytes of the owner of each shard, so results are bit-identical on every
// rank (they differ from the flat ring's in the last bits for floats).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct HierarchicalOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;  // every message of the call, on both transports
  size_t small_message_threshold = 32 * 1024;  // for the inter-host step (bytes)
  // The host-local phases copy once (direct.h's direct_local_allreduce) where the intra
  // transport reaches every local peer's memory; false: always the ring's steps.
  bool single_copy = true;
};

// Out of place (send == recv allowed), like ring_allreduce. `world_size` = intra.size() *
// inter.size(). Every rank of both groups must call it with the same arguments.
void hierarchical_allreduce(Transport& intra, Transport& inter, const void* send, void* recv,
                            size_t count, DType dtype, ReduceOp op,
                            const HierarchicalOptions& options);

}  // namespace petaring
