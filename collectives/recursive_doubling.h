// Recursive-doubling allreduce over a Transport: the latency path for small messages.
// The ring (ring.h) sends 2 (n - 1) messages per rank, each of about count / n values;
// recursive doubling sends about log2 n messages per rank, each of the whole buffer. Below
// a few KiB the number of messages dominates, so Communicator::allreduce picks this
// algorithm under its small-message threshold (communicator.h) and the ring above it.
//
// Terms (recursive_doubling.cc uses these words for its variables):
//   n, r     world size and this rank.
//   p        the largest power of two <= n; the group is ranks [0, p).
//   extra    a rank e in [p, n). Its partner is rank e - p (a rank of the group).
//   step     round k = 0, 1, ... log2 p - 1 of the group: rank r exchanges its whole
//            buffer with rank r ^ 2^k and both combine the two buffers.
//
// Phases:
//   fold     every extra rank e sends its input to rank e - p, which combines
//            own (op) received; extra ranks then wait.
//   doubling log2 p steps within the group: afterwards every group rank holds the
//            reduction over all n ranks (divided by n once, at the end, for kAverage).
//   unfold   rank e - p sends its result to extra rank e, which takes the bytes as they are.
//
// Determinism: every combine is (lower rank's block) (op) (higher rank's block), so the
// two ranks of a step compute the same bytes (also for NaN payloads, where reduce_into
// is not symmetric). Element i of the result is the balanced tree over the group
//   T(a, 1)   = x[a] (op) x[a + p]   when a + p < n (the fold), else x[a]
//   T(a, 2m)  = T(a, m) (op) T(a + m, m)
//   result    = T(0, p), then / n for kAverage
// where every (op) rounds to the dtype as reduce.h describes (bf16, f16: f32 arithmetic,
// rounded back at each combine). Every rank ends with those bytes, bit-identical on every
// rank. The order differs from the ring's (ring.h), so the two algorithms may round
// differently; for a given world size and threshold the choice is the same on every rank.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

struct RecursiveDoublingOptions {
  // Longest wait without progress before kTimeout.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Every message of this call carries this tag; callers take one per collective call.
  uint64_t tag = 0;
  // When set, called exactly once per call on every rank (also for count 0, world size 1
  // and unsupported dtype/op pairs, before their error): after this rank's first message
  // is posted and before any receive is posted. Communicator runs its signature check
  // here (signature.h), so the check's round trip overlaps the first data message instead
  // of preceding it; a hook that throws ends the call with no receive posted (the message
  // already sent stays unreceived under this call's tag, which no later call reuses).
  std::function<void()> before_first_receive;
};

// Out of place: recv = reduction over every rank's `send` (count values of `dtype`, host
// memory). send == recv is allowed (in place); any other overlap is not. `send` is only
// read. Blocking; every rank of the transport's group must call it with the same count,
// dtype, op and tag. Throws kInvalidArgument / kUnimplemented for ops a dtype does not
// support (reduce.h) before any message moves. Allocates one staging buffer of count
// values. World size 1 copies send to recv.
void recursive_doubling_allreduce(Transport& transport, const void* send, void* recv,
                                  size_t count, DType dtype, ReduceOp op,
                                  const RecursiveDoublingOptions& options);

// The largest power of two <= n (n >= 1): the size of the doubling group.
int recursive_doubling_group(int n);

}  // namespace petaring
