// The steps shared by the ring collectives (ring.h, reduce_scatter.h, allgather.h); the
// terms chunk, step and segment are defined in ring.h. Internal to collectives/: callers
// use the collectives, not these.
//
// Ownership: in both phases rank r owns chunk r. Reduce-scatter: at step s rank r sends
// chunk (r - s - 1) and receives chunk (r - s - 2), combining it into its own copy; after
// n - 1 steps chunk r is complete on rank r. Allgather: at step s rank r sends chunk
// (r - s) and receives chunk (r - s - 1) straight into place.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

// A half-open range of elements [begin, end).
struct Span {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

// The cut of `count` elements into n chunks (the first count % n hold one extra element)
// and of every chunk into segments_per_chunk() segments of at most segment_elems().
class RingLayout {
 public:
  RingLayout(size_t count, int n, size_t element_bytes, size_t segment_bytes);

  Span chunk(long c) const;              // c is taken mod n
  Span segment(long c, size_t k) const;  // empty when chunk c is shorter than k segments
  size_t segments_per_chunk() const { return segments_per_chunk_; }
  size_t segment_elems() const { return segment_elems_; }
  size_t element_bytes() const { return element_bytes_; }

 private:
  size_t count_;
  long n_;
  size_t element_bytes_;
  size_t segment_elems_ = 1;
  size_t segments_per_chunk_ = 0;
};

struct RingStepOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;
  // Called once, after the phase's first receive and first send are posted and before
  // anything is waited for: the communicator's signature check runs here, while the first
  // segment travels, instead of costing a round trip of its own before the collective.
  std::function<void()> before_first_wait;
};

// Reduce-scatter steps in place over `work` (the layout's count values of `dtype`):
// afterwards chunk r of rank r holds the reduction over all ranks, divided by n for
// kAverage; the other chunks hold partial results. Blocking.
void ring_reduce_scatter_steps(Transport& transport, void* work, const RingLayout& layout,
                               DType dtype, ReduceOp op, const RingStepOptions& options);

// Allgather steps in place over `work`: chunk r of rank r goes round the ring; afterwards
// every rank holds, in chunk c, the bytes of rank c's chunk c. Blocking.
void ring_allgather_steps(Transport& transport, void* work, const RingLayout& layout,
                          const RingStepOptions& options);

}  // namespace petaring
