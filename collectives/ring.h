// Ring allreduce over a Transport: reduce-scatter (reduce_scatter.h) then allgather
// (allgather.h) over the same chunks, sharing their step code (ring_steps.h).
//
// Terms (ring_steps.cc uses these words for its variables):
//   n, r     world size and this rank. Messages flow one way round the ring: rank r sends
//            to its right neighbour (r + 1) mod n and receives from its left (r - 1) mod n.
//   chunk    the buffer is cut into n contiguous chunks, as even as possible (lengths differ
//            by at most one element, the longer ones first; when count < n some chunks are
//            empty): ring_chunk() below. Rank r owns chunk r. In each step a rank sends one
//            chunk and receives one chunk.
//   step     one round in which every rank sends one chunk and receives another. A phase is
//            n - 1 steps.
//   segment  the piece of a chunk that travels as one message, at most segment_bytes long
//            (by default an eighth of the longest chunk, kept within [64 KiB, 1 MiB]).
//            Every chunk is cut into the same number of segments (that of the longest chunk);
//            empty segments send no message.
//
// Phase 1, reduce-scatter: at step s rank r sends chunk (r - s - 1) and receives chunk
// (r - s - 2), combining it into its own copy. After n - 1 steps rank r holds chunk r
// reduced over all ranks; for kAverage it then divides that chunk by n.
// Phase 2, allgather: at step s rank r sends chunk (r - s) and receives chunk (r - s - 1),
// overwriting its copy with the owner's bytes.
//
// Pipelining: the segments of all steps of a phase form one sequence. For each segment the
// receive of the next segment is posted first, then this segment is sent, then the received
// segment is reduced while the next one is in flight (two staging buffers alternate).
//
// Determinism: element i of chunk c is combined in one fixed order on its way round the
// ring, starting at rank c + 1 and ending at its owner c:
//   acc = x[c+1];  acc = acc (op) x[c+2];  ...;  acc = acc (op) x[c]      (ranks mod n)
// where every (op) rounds to the dtype (for bf16 and f16: widen both to f32, combine,
// round to nearest even: reduce.h), then acc / n once for kAverage. Every rank ends with
// the owner's bytes, so the result is bit-identical on every rank (it may differ between
// world sizes, and between dtypes beyond their rounding).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct RingOptions {
  // Largest message; smaller segments overlap more, larger ones cost fewer messages.
  // 0 picks ring_segment_bytes(count, n, element_bytes, transport.min_segment_bytes()).
  size_t segment_bytes = 0;
  // Longest wait without progress before kTimeout.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Every message of this call carries this tag; callers take one per collective call.
  uint64_t tag = 0;
  // Run once, while the first segment travels and before any received byte is combined
  // (the communicator's signature check: ring_steps.h).
  std::function<void()> before_first_wait;
};

// The automatic segment size: about 8 segments per chunk, within [64 KiB, 1 MiB], and at
// least `min_bytes` (the transport's Transport::min_segment_bytes).
// TODO(perf): measured on a 2-core host only; tune per transport on real nodes.
size_t ring_segment_bytes(size_t count, int n, size_t element_bytes = sizeof(float),
                          size_t min_bytes = 0);

// Elements [begin, end) of chunk c (0 <= c < n) when `count` elements are cut among n
// ranks: the first count % n chunks hold count / n + 1 elements, the others count / n.
struct RingChunk {
  size_t begin = 0;
  size_t end = 0;
};
RingChunk ring_chunk(size_t count, int n, int c);

// Out of place: recv = reduction over every rank's `send` (count values of `dtype`, host
// memory). send == recv is allowed (in place); any other overlap is not. Blocking; every
// rank of the transport's group must call it with the same count, dtype, op and tag.
// Throws kInvalidArgument / kUnimplemented for ops a dtype does not support (reduce.h)
// before any message moves. World size 1 copies send to recv.
void ring_allreduce(Transport& transport, const void* send, void* recv, size_t count,
                    DType dtype, ReduceOp op, const RingOptions& options);

// In place over f32 `data`; the same as ring_allreduce(t, data, data, count, kF32, ...).
void ring_allreduce_f32(Transport& transport, float* data, size_t count, ReduceOp op,
                        const RingOptions& options);

}  // namespace petaring
