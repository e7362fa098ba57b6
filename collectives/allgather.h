// Ring allgather over a Transport.
//
// Every rank contributes send_count values; every rank receives all n contributions,
// block b (send_count values) from rank b. This is phase 2 of the ring allreduce (ring.h
// defines chunk, step and segment): the chunks are the blocks and rank r owns block r. At
// step s rank r forwards block (r - s) to its right neighbour and receives block
// (r - s - 1) from its left, straight into place; after n - 1 steps every block has
// visited every rank. Each rank sends and receives (n - 1) * send_count values:
// busbw = algbw * (n - 1) / n. Bytes are copied, never combined: any dtype works.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct AllgatherOptions {
  size_t segment_bytes = 0;  // 0: ring_segment_bytes (ring.h) with the transport's minimum
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;  // every message of this call carries it
  std::function<void()> before_first_wait;  // run once while the first segment travels
};

// `send` holds send_count values of `dtype`; `recv` receives n * send_count, block b at
// recv + b * send_count. `send` may be recv's own block (recv + rank * send_count, in
// place) but must not overlap recv otherwise. Blocking; every rank must call it with the
// same send_count, dtype and tag.
void ring_allgather(Transport& transport, const void* send, void* recv, size_t send_count,
                    DType dtype, const AllgatherOptions& options);

}  // namespace petaring
