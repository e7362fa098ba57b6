#include "collectives/communicator.h"

#include <utility>

#include "collectives/barrier.h"
#include "collectives/broadcast.h"
#include "collectives/ring.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {

Communicator::Communicator(std::unique_ptr<Transport> transport)
    : transport_(std::move(transport)) {
  PR_CHECK(transport_ != nullptr) << "a Communicator needs a transport";
  PR_CHECK(transport_->size() >= 1 && transport_->rank() >= 0 &&
           transport_->rank() < transport_->size())
      << "transport reports rank " << transport_->rank() << " of " << transport_->size();
}

Communicator::~Communicator() = default;

// The same sequence on every rank as long as every rank makes the same calls in the same
// order; two calls never share a tag, so their messages never mix.
uint64_t Communicator::next_tag() { return sequence_++; }

void Communicator::allreduce(void* data, size_t count, DType dtype, ReduceOp op) {
  uint64_t tag = next_tag();
  if (dtype != DType::kF32) {
    PR_FAIL(kUnimplemented, "allreduce of ", dtype_name(dtype),
            " values is not supported yet; only f32 is (convert the buffer to f32 first)");
  }
  RingOptions options;
  options.timeout = timeout_;
  options.tag = tag;
  ring_allreduce_f32(*transport_, static_cast<float*>(data), count, op, options);
}

void Communicator::broadcast(void* data, size_t bytes, int root) {
  uint64_t tag = next_tag();
  if (root < 0 || root >= size()) {
    PR_FAIL(kInvalidArgument, "broadcast root ", root, " is not a rank of this group of ",
            size(), " ranks; pass a root in [0, ", size() - 1, "]");
  }
  BroadcastOptions options;
  options.timeout = timeout_;
  options.tag = tag;
  pipeline_broadcast(*transport_, data, bytes, root, options);
}

void Communicator::barrier() {
  BarrierOptions options;
  options.timeout = timeout_;
  options.tag = next_tag();
  dissemination_barrier(*transport_, options);
}

}  // namespace petaring
