#include "collectives/hierarchical.h"

#include <cstring>

#include "collectives/direct.h"
#include "collectives/recursive_doubling.h"
#include "collectives/ring.h"
#include "collectives/ring_steps.h"
#include "runtime/check.h"

namespace petaring {

void hierarchical_allreduce(Transport& intra, Transport& inter, const void* send, void* recv,
                            size_t count, DType dtype, ReduceOp op,
                            const HierarchicalOptions& options) {
  validate_reduction(dtype, op, "allreduce");
  const size_t element_bytes = dtype_size(dtype);
  if (count == 0) return;
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const size_t bytes = count * element_bytes;
  if (in != out) {
    PR_CHECK(in + bytes <= out || out + bytes <= in)
        << "allreduce send and recv buffers overlap without being the same buffer";
    std::memcpy(out, in, bytes);
  }
  const int local = intra.size(), hosts = inter.size();
  if (local * hosts == 1) return;
  // Average: sums all the way, one division by the world size on each shard.
  const ReduceOp combine = op == ReduceOp::kAverage ? ReduceOp::kSum : op;
  // The step across hosts, on this rank's shard (its chunk of the local phases).
  auto across_hosts = [&](char* shard_data, size_t shard_count) {
    if (hosts > 1 && shard_count > 0) {
      if (shard_count * element_bytes <= options.small_message_threshold) {
        recursive_doubling_allreduce(inter, shard_data, shard_data, shard_count, dtype, combine,
                                     RecursiveDoublingOptions{options.timeout, options.tag, {}});
      } else {
        RingOptions ring;
        ring.timeout = options.timeout;
        ring.tag = options.tag;
        ring_allreduce(inter, shard_data, shard_data, shard_count, dtype, combine, ring);
      }
    }
    if (op == ReduceOp::kAverage) average_in_place(shard_data, shard_count, dtype, local * hosts);
  };
  if (local > 1 && options.single_copy && peer_memory_of_all(intra) != nullptr) {
    direct_local_allreduce(intra, out, count, dtype, combine,
                           DirectOptions{0, options.timeout, options.tag, {}}, across_hosts);
    return;
  }
  RingLayout layout(count, local, element_bytes, ring_segment_bytes(count, local, element_bytes, intra.min_segment_bytes()));
  RingStepOptions steps{options.timeout, options.tag, {}};
  if (local > 1) ring_reduce_scatter_steps(intra, out, layout, dtype, combine, steps);
  Span shard = layout.chunk(intra.rank());
  across_hosts(out + shard.begin * element_bytes, shard.size());
  if (local > 1) ring_allgather_steps(intra, out, layout, steps);
}

}  // namespace petaring
