// Gradient averaging over data-parallel ranks in buckets, overlapped with backward.
//
// A bucket is a contiguous slice of the gradient buffer, grown from the parameter tensors
// backward finishes (GradReadyFn), in that order, until it holds bucket_mb MiB; the first
// bucket (the last layers, finished first) is capped at 1 MiB, as PyTorch DDP's
// first_bucket_bytes. Tensors may come in any order: the open gradients close as a bucket
// only once they form one slice (a weight reported before the bias below it waits for
// it); what is left at the end of backward goes out one bucket per slice. Closing a bucket enqueues, on the compute queue right
// after the kernels that wrote its last gradient, a host call that issues
// Communicator::allreduce_async(average) on the slice: the allreduce starts the moment the
// gradients are final and runs on the communicator's progress thread while the queue goes
// on with backward. Every rank builds the same buckets (same model, same order), so the
// collectives match.
//
// Times (steady clock), per step: compute start (the last micro-batch's forward begins on
// the queue), backward end (its last kernel done: taken in the same host call that issues
// the last bucket, before issuing, so that a progress thread taking the CPU cannot delay
// it), and per bucket issue (just before allreduce_async) and done. Bucket k
// runs from max(issue_k, done_k-1) (the progress thread runs one operation at a time) to
// done_k; the part of that before backward end is hidden behind compute.
//
// Threads: on_grad_ready and end_backward run on the thread that enqueues backward; the
// host calls issue collectives from the queue's thread (the only thread issuing while a
// step is in flight); wait() runs on the enqueuing thread again, after backward has been
// enqueued, and observes each bucket's completion in order.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "device/device.h"
#include "trainer/model.h"

namespace petaring {

struct SyncStats {
  int64_t buckets = 0;
  double comm_s = 0;      // time the buckets' allreduces ran
  double hidden_s = 0;    // the part of comm_s before backward ended
  double exposed_s = 0;   // from backward end until the last bucket was done
};

class GradientSync {
 public:
  static constexpr int64_t kFirstBucketBytes = 1 << 20;

  // `grads` (f32, host-visible) and `comm` must outlive this object.
  GradientSync(Communicator& comm, Tensor grads, double bucket_mb);
  ~GradientSync();

  // Starts a step whose last micro-batch runs on `q`: call before its forward_backward.
  void begin(Queue& q);
  // The callback to hand to the last micro-batch's forward_backward.
  GradReadyFn callback();
  // After the last micro-batch's forward_backward: closes the open bucket and marks
  // backward's end on the queue. Checks that every gradient element was reported once.
  void end_backward();
  // Blocks until every bucket's allreduce has finished (rethrowing the first error of a
  // collective or of the queue) and returns the step's times.
  SyncStats wait();

  // Bucket sizes (elements) of the last step, in issue order.
  const std::vector<int64_t>& bucket_sizes() const { return bucket_sizes_; }
  // For tests: called with "issue K", "done K" and "backward end" as they happen, from the
  // queue's thread (issue, backward end) or wait()'s (done). Set before begin().
  void set_trace(std::function<void(const std::string&)> trace) { trace_ = std::move(trace); }

 private:
  using Clock = std::chrono::steady_clock;
  void on_ready(int64_t offset, int64_t count);
  // Issues [lo, lo + count) from the queue; `last`: it ends backward, too.
  void issue_bucket(int64_t lo, int64_t count, bool last);
  void note(const std::string& what);

  Communicator& comm_;
  Tensor grads_;
  int64_t bucket_bytes_;
  Queue* queue_ = nullptr;
  std::function<void(const std::string&)> trace_;
  // Enqueuing thread only.
  std::map<int64_t, int64_t> open_;  // reported, not yet issued: slices lo -> hi, merged
  int64_t open_count_ = 0;           // elements in open_
  int64_t covered_ = 0;
  std::vector<int64_t> bucket_sizes_;
  std::unique_ptr<Event> backward_done_;
  // Shared with the queue's thread.
  std::mutex mutex_;
  std::condition_variable issued_cv_;
  struct Issued {
    std::shared_ptr<Work> work;
    Clock::time_point at;
  };
  std::vector<Issued> issued_;
  Clock::time_point compute_start_, backward_end_;
};

}  // namespace petaring
