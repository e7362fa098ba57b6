// CpuQueue: an in-order stream of work run by one worker thread of its own.
//
// Terms used below:
//   item       one enqueued piece of work (a kernel launch, a write, read or copy, a
//              host_call, or the wait of a wait_for); items are numbered 1, 2, ... in
//              enqueue order.
//   completed  how many items have finished; item i finishes before item i+1 starts.
//   timeline   the state shared by a queue and the events it recorded: the completed
//              count, the first error and the condition variable that announces both.
//              Events hold it by shared ownership, so they may outlive their queue.
//
// Errors. An item that throws does not stop the worker: the error is stored with the
// queue's name and the item's kind in front of its message ("cpu:0/compute:
// softmax_xent_forward: label 12 in row 3 ...", same ErrorKind; other exceptions become
// kInternal). Items enqueued after a failed one are skipped (they still count as
// completed, so events complete) until synchronize() reports the error, which clears
// it. Event::wait() rethrows a pending error raised at or before its item, without
// clearing it.
//
// Blocking: enqueue calls never block on work; synchronize() and Event::wait() block on
// a condition variable (no spinning). Calling synchronize() from work running on the
// same queue would wait for itself and fails a PR_CHECK instead. The destructor runs
// every item still enqueued, then joins the worker; an error nobody reported is logged.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "device/device.h"

namespace petaring {

struct CpuQueueTimeline {
  explicit CpuQueueTimeline(std::string queue_name) : name(std::move(queue_name)) {}
  const std::string name;
  std::mutex mutex;
  std::condition_variable changed;  // notified when `completed` or `error` changes
  uint64_t completed = 0;           // guarded by mutex
  std::exception_ptr error;         // the first unreported error; guarded by mutex
  uint64_t error_item = 0;          // the item that raised `error`; guarded by mutex
};

class CpuEvent : public Event {
 public:
  // Completes when `timeline` has completed `item` items.
  CpuEvent(std::shared_ptr<CpuQueueTimeline> timeline, uint64_t item)
      : timeline_(std::move(timeline)), item_(item) {}
  bool query() override;
  void wait(std::chrono::milliseconds timeout = std::chrono::hours(24 * 365)) override;

 private:
  std::shared_ptr<CpuQueueTimeline> timeline_;
  uint64_t item_;
};

class CpuQueue : public Queue {
 public:
  // `device` must outlive the queue. Starts the worker thread.
  CpuQueue(Device& device, std::string name);
  ~CpuQueue() override;

  Device& device() override { return device_; }
  std::string name() const override { return timeline_->name; }

  // `kernel` must come from a CpuDevice's table (kInvalidArgument otherwise).
  void launch(const Kernel& kernel, KernelArgs args) override;
  void write(Tensor dst, const void* src) override;
  void read(void* dst, Tensor src) override;
  void copy(Tensor dst, Tensor src) override;
  void host_call(std::function<void()> fn) override;

  std::unique_ptr<Event> record() override;
  void wait_for(std::shared_ptr<Event> event) override;
  void synchronize() override;

 private:
  struct Item {
    std::string_view what;  // "write", a kernel's name, ...: names the item in errors
    std::function<void()> run;
  };

  void enqueue(std::string_view what, std::function<void()> run);
  void run_worker();
  // Checks that `tensor` lives on this queue's device and is host-visible.
  void check_tensor(const Tensor& tensor, const char* role) const;

  Device& device_;
  std::shared_ptr<CpuQueueTimeline> timeline_;
  std::condition_variable work_ready_;  // with timeline_->mutex
  std::deque<Item> pending_;            // guarded by timeline_->mutex
  uint64_t enqueued_ = 0;               // guarded by timeline_->mutex
  bool stopping_ = false;               // guarded by timeline_->mutex
  std::thread worker_;
};

}  // namespace petaring
