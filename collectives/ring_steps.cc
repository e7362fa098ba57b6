#include "collectives/ring_steps.h"

#include <deque>
#include <memory>
#include <vector>

#include "collectives/scratch.h"
#include "runtime/check.h"

namespace petaring {

RingLayout::RingLayout(size_t count, int n, size_t element_bytes, size_t segment_bytes)
    : count_(count), n_(n), element_bytes_(element_bytes) {
  size_t longest = (count + n - 1) / n;
  segment_elems_ = std::max<size_t>(1, segment_bytes / element_bytes);
  segments_per_chunk_ = longest == 0 ? 0 : (longest + segment_elems_ - 1) / segment_elems_;
}

Span RingLayout::chunk(long c) const {
  size_t index = static_cast<size_t>(((c % n_) + n_) % n_);
  size_t base = count_ / n_, extra = count_ % n_;
  size_t begin = index * base + std::min(index, extra);
  return Span{begin, begin + base + (index < extra ? 1 : 0)};
}

Span RingLayout::segment(long c, size_t k) const {
  Span whole = chunk(c);
  size_t begin = std::min(whole.end, whole.begin + k * segment_elems_);
  return Span{begin, std::min(whole.end, begin + segment_elems_)};
}

namespace {

// Sends allowed in flight before the oldest is waited for.
constexpr size_t kMaxSendsInFlight = 8;

// One phase of n - 1 steps. The segments of all steps form one sequence of units: for
// each unit the receive of the next unit is posted first, then this unit is sent, then
// the received segment is reduced (reduce-scatter: from one of two staging buffers into
// `work`) while the next one is in flight. A segment reduced at step s is sent at step
// s + 1 without waiting for the rest of its chunk.
class RingPhase {
 public:
  // `reduce` false: allgather (receives land in `work`, `dtype` and `op` unused).
  RingPhase(Transport& transport, void* work, const RingLayout& layout,
            const RingStepOptions& options, bool reduce, DType dtype, ReduceOp op)
      : transport_(transport), work_(static_cast<char*>(work)), layout_(layout),
        options_(options), reduce_(reduce), fused_(transport.reduces_on_receive()), dtype_(dtype),
        op_(op) {
    const int n = transport.size(), r = transport.rank();
    left_ = (r + n - 1) % n;
    right_ = (r + 1) % n;
    first_send_chunk_ = reduce ? r - 1 : r;
    if (reduce && !fused_) {
      const size_t staging = std::min(layout.segment_elems(), layout.chunk(0).size()) *
                             layout.element_bytes();
      const size_t padded = (staging + 63) / 64 * 64;
      staging_[0] = thread_scratch(2 * padded);
      staging_[1] = staging_[0] + padded;
    }
  }

  void run() {
    const size_t per_chunk = layout_.segments_per_chunk();
    const size_t units = static_cast<size_t>(transport_.size() - 1) * per_chunk;
    if (units == 0) {
      if (options_.before_first_wait) options_.before_first_wait();
      return;
    }
    std::unique_ptr<Request> receiving = post_receive(0, per_chunk);
    for (size_t unit = 0; unit < units; ++unit) {
      const size_t step = unit / per_chunk, k = unit % per_chunk;
      std::unique_ptr<Request> next =
          unit + 1 < units ? post_receive(unit + 1, per_chunk) : nullptr;
      post_send(send_chunk(step), k);
      if (unit == 0 && options_.before_first_wait) options_.before_first_wait();
      if (receiving) {
        receiving->wait(options_.timeout);
        if (reduce_ && !fused_) combine_staged(layout_.segment(recv_chunk(step), k), unit % 2);
      }
      receiving = std::move(next);
    }
    while (!sends_.empty()) {
      sends_.front()->wait(options_.timeout);
      sends_.pop_front();
    }
  }

 private:
  long send_chunk(size_t step) const { return first_send_chunk_ - static_cast<long>(step); }
  long recv_chunk(size_t step) const { return send_chunk(step) - 1; }
  char* at(size_t element) const { return work_ + element * layout_.element_bytes(); }

  std::unique_ptr<Request> post_receive(size_t unit, size_t per_chunk) {
    Span segment = layout_.segment(recv_chunk(unit / per_chunk), unit % per_chunk);
    if (segment.size() == 0) return nullptr;
    if (reduce_ && fused_) {  // combined into `work` as the bytes arrive
      return transport_.irecv_reduce(left_, at(segment.begin),
                                     segment.size() * layout_.element_bytes(), options_.tag,
                                     dtype_, op_);
    }
    char* target = reduce_ ? staging_[unit % 2] : at(segment.begin);
    return transport_.irecv(left_, target, segment.size() * layout_.element_bytes(),
                            options_.tag);
  }

  void post_send(long chunk, size_t k) {
    Span segment = layout_.segment(chunk, k);
    if (segment.size() == 0) return;
    if (sends_.size() >= kMaxSendsInFlight) {
      sends_.front()->wait(options_.timeout);
      sends_.pop_front();
    }
    sends_.push_back(transport_.isend(right_, at(segment.begin),
                                      segment.size() * layout_.element_bytes(), options_.tag));
  }

  // Own partial (dst) combined with the left neighbour's (src): the order ring.h documents.
  void combine_staged(Span segment, size_t buffer) {
    reduce_into(at(segment.begin), staging_[buffer], segment.size(), dtype_, op_);
  }

  Transport& transport_;
  char* work_;
  const RingLayout& layout_;
  const RingStepOptions& options_;
  bool reduce_;
  bool fused_;  // the transport combines received bytes itself (reduces_on_receive)
  DType dtype_;
  ReduceOp op_;
  int left_ = 0, right_ = 0;
  long first_send_chunk_ = 0;
  char* staging_[2] = {nullptr, nullptr};  // two segments of thread_scratch()
  std::deque<std::unique_ptr<Request>> sends_;
};

}  // namespace

void ring_reduce_scatter_steps(Transport& transport, void* work, const RingLayout& layout,
                               DType dtype, ReduceOp op, const RingStepOptions& options) {
  RingPhase(transport, work, layout, options, /*reduce=*/true, dtype, op).run();
  if (op == ReduceOp::kAverage) {
    Span owned = layout.chunk(transport.rank());
    average_in_place(static_cast<char*>(work) + owned.begin * layout.element_bytes(),
                     owned.size(), dtype, transport.size());
  }
}

void ring_allgather_steps(Transport& transport, void* work, const RingLayout& layout,
                          const RingStepOptions& options) {
  RingPhase(transport, work, layout, options, /*reduce=*/false, DType::kU8, ReduceOp::kSum).run();
}

}  // namespace petaring
