#include "collectives/allgather.h"

#include <cstring>

#include "collectives/buffer_checks.h"
#include "collectives/ring.h"
#include "collectives/ring_steps.h"
#include "runtime/check.h"

namespace petaring {

void ring_allgather(Transport& transport, const void* send, void* recv, size_t send_count,
                    DType dtype, const AllgatherOptions& options) {
  const int n = transport.size(), r = transport.rank();
  if (send_count == 0) return;
  const size_t element_bytes = dtype_size(dtype);
  const size_t count = static_cast<size_t>(n) * send_count;
  const size_t block_bytes = send_count * element_bytes;
  if (allgather_own_block(send, recv, block_bytes, n, r)) return;
  char* out = static_cast<char*>(recv);
  size_t segment_bytes = options.segment_bytes > 0
                             ? options.segment_bytes
                             : ring_segment_bytes(count, n, element_bytes, transport.min_segment_bytes());
  RingLayout layout(count, n, element_bytes, segment_bytes);
  ring_allgather_steps(transport, out, layout, RingStepOptions{options.timeout, options.tag, options.before_first_wait});
}

}  // namespace petaring
