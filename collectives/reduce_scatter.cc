#include "collectives/reduce_scatter.h"

#include <cstring>
#include <vector>

#include "collectives/buffer_checks.h"
#include "collectives/ring.h"
#include "collectives/ring_steps.h"
#include "runtime/check.h"

namespace petaring {

void ring_reduce_scatter(Transport& transport, const void* send, void* recv, size_t recv_count,
                         DType dtype, ReduceOp op, const ReduceScatterOptions& options) {
  validate_reduction(dtype, op, "reduce_scatter");
  const int n = transport.size(), r = transport.rank();
  if (recv_count == 0) return;
  const size_t element_bytes = dtype_size(dtype);
  const size_t count = static_cast<size_t>(n) * recv_count;
  const size_t block_bytes = recv_count * element_bytes;
  if (reduce_scatter_alone(send, recv, block_bytes, n)) return;
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  std::vector<char> work(in, in + count * element_bytes);
  size_t segment_bytes = options.segment_bytes > 0
                             ? options.segment_bytes
                             : ring_segment_bytes(count, n, element_bytes, transport.min_segment_bytes());
  // count = n * recv_count cuts into n equal chunks: chunk b is block b.
  RingLayout layout(count, n, element_bytes, segment_bytes);
  ring_reduce_scatter_steps(transport, work.data(), layout, dtype, op,
                            RingStepOptions{options.timeout, options.tag, options.before_first_wait});
  std::memcpy(out, work.data() + static_cast<size_t>(r) * block_bytes, block_bytes);
}

}  // namespace petaring
