#include "collectives/ring.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <vector>

#include "runtime/check.h"

namespace petaring {
namespace {

// Sends allowed in flight before the oldest is waited for.
constexpr size_t kMaxSendsInFlight = 8;

// A half-open range of elements [begin, end).
struct Span {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

// The cut of `count` elements into n chunks of segments (see ring.h).
class Layout {
 public:
  Layout(size_t count, int n, size_t segment_bytes) : count_(count), n_(n) {
    size_t longest = (count + n - 1) / n;
    segment_elems_ = std::max<size_t>(1, segment_bytes / sizeof(float));
    segments_per_chunk_ = longest == 0 ? 0 : (longest + segment_elems_ - 1) / segment_elems_;
  }

  // Chunk c (any integer, taken mod n): the first count % n chunks hold one extra element.
  Span chunk(long c) const {
    size_t index = static_cast<size_t>(((c % n_) + n_) % n_);
    size_t base = count_ / n_, extra = count_ % n_;
    size_t begin = index * base + std::min(index, extra);
    return Span{begin, begin + base + (index < extra ? 1 : 0)};
  }
  // Segment k of chunk c; empty when the chunk is shorter than k segments.
  Span segment(long c, size_t k) const {
    Span whole = chunk(c);
    size_t begin = std::min(whole.end, whole.begin + k * segment_elems_);
    return Span{begin, std::min(whole.end, begin + segment_elems_)};
  }
  size_t segments_per_chunk() const { return segments_per_chunk_; }
  size_t segment_elems() const { return segment_elems_; }

 private:
  size_t count_;
  long n_;
  size_t segment_elems_ = 1;
  size_t segments_per_chunk_ = 0;
};

// One phase of n - 1 steps. Reduce-scatter adds each received segment into `data`;
// allgather receives straight into `data`.
class RingPhase {
 public:
  RingPhase(Transport& transport, float* data, const Layout& layout, const RingOptions& options,
            bool reduce)
      : transport_(transport), data_(data), layout_(layout), options_(options), reduce_(reduce) {
    int n = transport.size(), r = transport.rank();
    left_ = (r + n - 1) % n;
    right_ = (r + 1) % n;
    // Reduce-scatter sends chunk r - s at step s; allgather sends chunk r + 1 - s.
    first_send_chunk_ = reduce ? r : r + 1;
    if (reduce) {
      size_t staging = std::min(layout.segment_elems(), layout.chunk(0).size());
      staging_[0].resize(staging);
      staging_[1].resize(staging);
    }
  }

  void run() {
    const size_t per_chunk = layout_.segments_per_chunk();
    const size_t units = static_cast<size_t>(transport_.size() - 1) * per_chunk;
    if (units == 0) return;
    std::unique_ptr<Request> receiving = post_receive(0, per_chunk);
    for (size_t unit = 0; unit < units; ++unit) {
      size_t step = unit / per_chunk, k = unit % per_chunk;
      std::unique_ptr<Request> next =
          unit + 1 < units ? post_receive(unit + 1, per_chunk) : nullptr;
      post_send(send_chunk(step), k);
      if (receiving) {
        receiving->wait(options_.timeout);
        if (reduce_) add_staged(layout_.segment(recv_chunk(step), k), unit % 2);
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

  std::unique_ptr<Request> post_receive(size_t unit, size_t per_chunk) {
    Span segment = layout_.segment(recv_chunk(unit / per_chunk), unit % per_chunk);
    if (segment.size() == 0) return nullptr;
    float* target = reduce_ ? staging_[unit % 2].data() : data_ + segment.begin;
    return transport_.irecv(left_, target, segment.size() * sizeof(float), options_.tag);
  }

  void post_send(long chunk, size_t k) {
    Span segment = layout_.segment(chunk, k);
    if (segment.size() == 0) return;
    if (sends_.size() >= kMaxSendsInFlight) {
      sends_.front()->wait(options_.timeout);
      sends_.pop_front();
    }
    sends_.push_back(transport_.isend(right_, data_ + segment.begin,
                                      segment.size() * sizeof(float), options_.tag));
  }

  void add_staged(Span segment, size_t buffer) {
    float* __restrict out = data_ + segment.begin;
    const float* __restrict in = staging_[buffer].data();
    for (size_t i = 0; i < segment.size(); ++i) out[i] += in[i];
  }

  Transport& transport_;
  float* data_;
  const Layout& layout_;
  const RingOptions& options_;
  bool reduce_;
  int left_ = 0, right_ = 0;
  long first_send_chunk_ = 0;
  std::vector<float> staging_[2];
  std::deque<std::unique_ptr<Request>> sends_;
};

}  // namespace

size_t ring_segment_bytes(size_t count, int n) {
  constexpr size_t kMin = 64 * 1024, kMax = 1024 * 1024, kSegmentsPerChunk = 8;
  size_t chunk_bytes = (count + n - 1) / n * sizeof(float);
  return std::clamp(chunk_bytes / kSegmentsPerChunk, kMin, kMax);
}

void ring_allreduce_f32(Transport& transport, float* data, size_t count, ReduceOp op,
                        const RingOptions& options) {
  const int n = transport.size();
  if (n == 1 || count == 0) return;
  PR_CHECK(data != nullptr) << "allreduce of " << count << " values over a null buffer";
  size_t segment_bytes =
      options.segment_bytes > 0 ? options.segment_bytes : ring_segment_bytes(count, n);
  Layout layout(count, n, segment_bytes);

  RingPhase(transport, data, layout, options, /*reduce=*/true).run();
  if (op == ReduceOp::kAverage) {
    Span owned = layout.chunk(transport.rank() + 1);
    const float divisor = static_cast<float>(n);
    for (size_t i = owned.begin; i < owned.end; ++i) data[i] /= divisor;
  }
  RingPhase(transport, data, layout, options, /*reduce=*/false).run();
}

}  // namespace petaring
