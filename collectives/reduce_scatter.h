// Ring reduce-scatter over a Transport.
//
// Every rank contributes n blocks of recv_count values (its `send` buffer, n = world
// size); rank r receives block r reduced over all ranks. This is phase 1 of the ring
// allreduce (ring.h, which defines chunk, step and segment): here the chunks are the
// blocks, all recv_count long, and rank r owns block r. At step s rank r sends its
// partial of block (r - s - 1) to its right neighbour and combines the partial of block
// (r - s - 2) arriving from its left; after n - 1 steps block r is complete on rank r.
// Each rank sends and receives (n - 1) * recv_count values: busbw = algbw * (n - 1) / n.
//
// Order and rounding are those of ring.h: block c is combined starting at rank c + 1 and
// ending at rank c, rounding to the dtype at every hop; kAverage divides once at the end.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct ReduceScatterOptions {
  size_t segment_bytes = 0;  // 0: ring_segment_bytes (ring.h) with the transport's minimum
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;  // every message of this call carries it
  std::function<void()> before_first_wait;  // run once while the first segment travels
};

// `send` holds n * recv_count values of `dtype`, block b at send + b * recv_count; `recv`
// receives recv_count values and must not overlap `send`. `send` is only read. Blocking;
// every rank must call it with the same recv_count, dtype, op and tag. Throws
// kInvalidArgument / kUnimplemented for unsupported (dtype, op) pairs (reduce.h) before
// any message moves.
// TODO(perf): the ring works on a private copy of `send` (one extra copy of the input);
// reducing from `send` into two chunk-sized staging buffers would avoid it.
void ring_reduce_scatter(Transport& transport, const void* send, void* recv, size_t recv_count,
                         DType dtype, ReduceOp op, const ReduceScatterOptions& options);

}  // namespace petaring
