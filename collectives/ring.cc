#include "collectives/ring.h"

#include <algorithm>
#include <cstring>

#include "collectives/buffer_checks.h"
#include "collectives/ring_steps.h"
#include "runtime/check.h"

namespace petaring {

size_t ring_segment_bytes(size_t count, int n, size_t element_bytes, size_t min_bytes) {
  constexpr size_t kMin = 64 * 1024, kMax = 1024 * 1024, kSegmentsPerChunk = 8;
  size_t chunk_bytes = (count + n - 1) / n * element_bytes;
  size_t low = std::max(kMin, min_bytes);
  return std::clamp(chunk_bytes / kSegmentsPerChunk, low, std::max(kMax, low));
}

RingChunk ring_chunk(size_t count, int n, int c) {
  PR_CHECK(n >= 1 && c >= 0 && c < n) << "chunk " << c << " of " << n;
  Span span = RingLayout(count, n, 1, 1).chunk(c);
  return RingChunk{span.begin, span.end};
}

void ring_allreduce(Transport& transport, const void* send, void* recv, size_t count,
                    DType dtype, ReduceOp op, const RingOptions& options) {
  validate_reduction(dtype, op, "allreduce");
  const int n = transport.size();
  const size_t element_bytes = dtype_size(dtype);
  if (count == 0) return;
  const size_t bytes = count * element_bytes;
  check_allreduce_buffers(send, recv, bytes);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  if (in != out) std::memcpy(out, in, bytes);
  if (n == 1) return;  // the sum, max, min or mean over one rank is its own data

  size_t segment_bytes = options.segment_bytes > 0
                             ? options.segment_bytes
                             : ring_segment_bytes(count, n, element_bytes, transport.min_segment_bytes());
  RingLayout layout(count, n, element_bytes, segment_bytes);
  RingStepOptions steps{options.timeout, options.tag, options.before_first_wait};
  ring_reduce_scatter_steps(transport, out, layout, dtype, op, steps);
  steps.before_first_wait = nullptr;  // ran in the first phase
  ring_allgather_steps(transport, out, layout, steps);
}

void ring_allreduce_f32(Transport& transport, float* data, size_t count, ReduceOp op,
                        const RingOptions& options) {
  ring_allreduce(transport, data, data, count, DType::kF32, op, options);
}

}  // namespace petaring
