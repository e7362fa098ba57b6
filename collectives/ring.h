// Ring allreduce over a Transport.
//
// Terms (the code in ring.cc uses these words for its variables):
//   n, r     world size and this rank. Messages flow one way round the ring: rank r sends
//            to its right neighbour (r + 1) mod n and receives from its left (r - 1) mod n.
//   chunk    the buffer is cut into n contiguous chunks, as even as possible (lengths differ
//            by at most one element; when count < n some chunks are empty). In each step a
//            rank sends one chunk and receives one chunk: the 1/n slice it owns in that step.
//   step     one round in which every rank sends one chunk and receives another. A phase is
//            n - 1 steps.
//   segment  the piece of a chunk that travels as one message, at most segment_bytes long
//            (by default an eighth of the longest chunk, kept within [64 KiB, 1 MiB]).
//            Every chunk is cut into the same number of segments (that of the longest chunk);
//            empty segments send no message.
//
// Phase 1, reduce-scatter: at step s rank r sends chunk (r - s) and receives chunk
// (r - s - 1), adding it into its own copy. After n - 1 steps rank r holds chunk (r + 1)
// reduced over all ranks: it is that chunk's owner. For kAverage the owner then divides its
// chunk by n.
// Phase 2, allgather: at step s rank r sends chunk (r + 1 - s) and receives chunk (r - s),
// overwriting its copy with the owner's bytes.
//
// Pipelining: the segments of all steps of a phase form one sequence. For each segment the
// receive of the next segment is posted first, then this segment is sent, then the received
// segment is reduced while the next one is in flight (two staging buffers alternate). A
// segment reduced at step s is sent at step s + 1 without waiting for the rest of its chunk.
//
// Determinism: chunk c is summed in one fixed order on its way round the ring,
// ((x_c + x_{c+1}) + x_{c+2}) + ... + x_{c-1}, and every rank ends with its owner's bytes,
// so the result is bit-identical on every rank (it may differ between world sizes).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "collectives/communicator.h"
#include "collectives/transport.h"

namespace petaring {

struct RingOptions {
  // Largest message; smaller segments overlap more, larger ones cost fewer messages.
  // 0 picks ring_segment_bytes(count, n).
  size_t segment_bytes = 0;
  // Longest wait without progress before kTimeout.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Every message of this call carries this tag; callers take one per collective call.
  uint64_t tag = 0;
};

// The automatic segment size: about 8 segments per chunk, within [64 KiB, 1 MiB].
// TODO(perf): measured on a loaded 2-core host only; tune per transport on real nodes.
size_t ring_segment_bytes(size_t count, int n);

// In place over `data` (count f32 values in host memory); blocking; every rank of the
// transport's group must call it with the same count, op and tag. World size 1 returns
// at once (the sum or average over one rank is the rank's own data).
void ring_allreduce_f32(Transport& transport, float* data, size_t count, ReduceOp op,
                        const RingOptions& options);

}  // namespace petaring
