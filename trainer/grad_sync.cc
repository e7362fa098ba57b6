#include "trainer/grad_sync.h"

#include <algorithm>

#include "runtime/error.h"

namespace petaring {
namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

GradientSync::GradientSync(Communicator& comm, Tensor grads, double bucket_mb)
    : comm_(comm), grads_(grads),
      bucket_bytes_(std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20)))) {
  PR_CHECK(grads.dtype == DType::kF32);
  PR_CHECK(grads.buffer->host_data() != nullptr)
      << "gradient sync needs host-visible gradients (buffer on " << grads.buffer->device_name() << ")";
}

GradientSync::~GradientSync() {
  // Host calls still queued refer to this object: let them run first.
  if (queue_ != nullptr) {
    try {
      queue_->synchronize();
    } catch (...) {  // the error belongs to the step that failed, already on its way up
    }
  }
  // A step abandoned by an error may still have collectives in flight on our buffer: the
  // job is failing, so stop them (peers would otherwise wait for a timeout) before the
  // buffer goes away.
  std::lock_guard<std::mutex> lock(mutex_);
  bool unfinished = false;
  for (Issued& bucket : issued_) unfinished = unfinished || !bucket.work->test();
  if (unfinished) comm_.abort();
  for (Issued& bucket : issued_) {
    try {
      bucket.work->wait();
    } catch (...) {  // already reported (or being reported) by wait()
    }
  }
}

void GradientSync::note(const std::string& what) {
  if (trace_) trace_(what);
}

void GradientSync::begin(Queue& q) {
  queue_ = &q;
  open_.clear();
  open_count_ = 0;
  covered_ = 0;
  bucket_sizes_.clear();
  backward_done_.reset();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    issued_.clear();
  }
  q.host_call([this] { compute_start_ = Clock::now(); });
}

GradReadyFn GradientSync::callback() {
  return [this](int64_t offset, int64_t count, const std::shared_ptr<Event>& ready) {
    // Gradients are written on queue_ (the Model contract): the host call closing a
    // bucket runs after them in queue order, so `ready` needs no wait of its own.
    (void)ready;
    on_ready(offset, count);
  };
}

void GradientSync::on_ready(int64_t offset, int64_t count) {
  PR_CHECK(queue_ != nullptr) << "begin() first";
  PR_CHECK(offset >= 0 && count >= 0 && offset + count <= grads_.numel())
      << "gradient slice [" << offset << ", +" << count << ") of " << grads_.numel();
  if (count == 0) return;
  covered_ += count;
  // Add [offset, offset + count) to the open slices, merging it with its neighbours.
  int64_t lo = offset, hi = offset + count;
  auto next = open_.lower_bound(lo);
  PR_CHECK(next == open_.end() || next->first >= hi) << "gradient slice at " << offset << " reported twice";
  if (next != open_.end() && next->first == hi) {
    hi = next->second;
    next = open_.erase(next);
  }
  if (next != open_.begin()) {
    auto previous = std::prev(next);
    PR_CHECK_LE(previous->second, lo) << "gradient slice at " << offset << " reported twice";
    if (previous->second == lo) {
      lo = previous->first;
      open_.erase(previous);
    }
  }
  open_[lo] = hi;
  open_count_ += count;
  // A bucket must be one slice: close only when the open gradients are contiguous.
  const int64_t cap = bucket_sizes_.empty() ? std::min(kFirstBucketBytes, bucket_bytes_) : bucket_bytes_;
  if (open_.size() == 1 && open_count_ * static_cast<int64_t>(sizeof(float)) >= cap) {
    open_.clear();
    open_count_ = 0;
    issue_bucket(lo, hi - lo, false);
  }
}

void GradientSync::issue_bucket(int64_t lo, int64_t count, bool last) {
  const int64_t index = static_cast<int64_t>(bucket_sizes_.size());
  bucket_sizes_.push_back(count);
  float* data = grads_.data<float>() + lo;
  queue_->host_call([this, data, count, index, last] {
    const Clock::time_point at = Clock::now();
    if (last) backward_end_ = at;
    std::shared_ptr<Work> work =
        comm_.allreduce_async(data, static_cast<size_t>(count), DType::kF32, ReduceOp::kAverage);
    note("issue " + std::to_string(index));
    if (last) note("backward end");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      issued_.push_back(Issued{std::move(work), at});
    }
    issued_cv_.notify_all();
  });
}

void GradientSync::end_backward() {
  PR_CHECK_EQ(covered_, grads_.numel()) << "the model reported gradient slices covering "
                                        << covered_ << " of " << grads_.numel() << " elements";
  if (!open_.empty()) {
    // What is left (split by buckets closed between its parts): one bucket per slice,
    // from the end of the buffer, the last one marking backward's end.
    for (auto it = open_.rbegin(); it != open_.rend(); ++it) {
      issue_bucket(it->first, it->second - it->first, std::next(it) == open_.rend());
    }
    open_.clear();
    open_count_ = 0;
  } else {
    // The last gradient closed a bucket by its size: that bucket's issue is backward's end
    // (the model enqueues nothing after its last on_grad_ready).
    queue_->host_call([this] {
      std::lock_guard<std::mutex> lock(mutex_);
      backward_end_ = issued_.empty() ? Clock::now() : issued_.back().at;
      note("backward end");
    });
  }
  backward_done_ = queue_->record();
}

SyncStats GradientSync::wait() {
  PR_CHECK(backward_done_ != nullptr) << "end_backward() first";
  const size_t buckets = bucket_sizes_.size();
  std::vector<Clock::time_point> issue(buckets), done(buckets);
  for (size_t k = 0; k < buckets; ++k) {
    std::shared_ptr<Work> work;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // The queue issues buckets in order; if it stops early (an error in backward), its
      // work is done and the bucket will never come: surface the queue's error.
      while (issued_.size() <= k) {
        if (backward_done_->query()) {
          lock.unlock();
          backward_done_->wait();  // rethrows the queue's error, if any
          lock.lock();
          if (issued_.size() <= k) {
            PR_FAIL(kInternal, "gradient bucket ", k, " was never issued although backward "
                    "finished on ", queue_->name());
          }
          break;
        }
        issued_cv_.wait_for(lock, std::chrono::milliseconds(50));
      }
      work = issued_[k].work;
      issue[k] = issued_[k].at;
    }
    work->wait();
    done[k] = Clock::now();
    note("done " + std::to_string(k));
  }
  backward_done_->wait();
  SyncStats stats;
  stats.buckets = static_cast<int64_t>(buckets);
  for (size_t k = 0; k < buckets; ++k) {
    const Clock::time_point start = k == 0 ? issue[k] : std::max(issue[k], done[k - 1]);
    if (done[k] <= start) continue;
    stats.comm_s += seconds(done[k] - start);
    const Clock::time_point hidden_end = std::min(done[k], backward_end_);
    const Clock::time_point hidden_start = std::max(start, compute_start_);
    if (hidden_end > hidden_start) stats.hidden_s += seconds(hidden_end - hidden_start);
  }
  if (buckets > 0 && done.back() > backward_end_) stats.exposed_s = seconds(done.back() - backward_end_);
  return stats;
}

}  // namespace petaring
