// Pipelined chain broadcast over a Transport.
//
// Terms: the ranks form a chain that starts at the root and follows the ring,
// root -> root + 1 -> ... -> root - 1 (mod n). The buffer travels as segments of at most
// segment_bytes; each rank receives segment k from its left, posts the receive of
// segment k + 1, then forwards segment k to its right, so every link of the chain carries
// a segment at once. Time is about (n - 2 + bytes / segment_bytes) segment transfers:
// bandwidth-optimal for large buffers, latency O(n) for small ones.
// TODO(perf): a binomial tree for small buffers on large worlds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "collectives/transport.h"

namespace petaring {

struct BroadcastOptions {
  size_t segment_bytes = 256 * 1024;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;  // every message of this call carries it
};

// Copies `bytes` from `root`'s `data` into every other rank's `data`; in place; blocking.
// Every rank must call it with the same bytes, root and tag.
void pipeline_broadcast(Transport& transport, void* data, size_t bytes, int root,
                        const BroadcastOptions& options);

}  // namespace petaring
