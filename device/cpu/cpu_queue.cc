#include "device/cpu/cpu_queue.h"

#include <cstring>
#include <utility>

#include "device/cpu/cpu_kernels.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

// Longer than this counts as "forever": waits without a deadline (now() + timeout
// would overflow the clock for very large timeouts).
constexpr std::chrono::hours kForever{24 * 365 * 10};

// The error of a failed item, with the queue and the item in front of its message.
std::exception_ptr describe_failure(const std::string& queue, std::string_view what) {
  try {
    throw;
  } catch (const Error& e) {
    return std::make_exception_ptr(Error(e.kind(), str_cat(queue, ": ", what, ": ", e.what())));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(
        Error(ErrorKind::kInternal, str_cat(queue, ": ", what, ": unexpected exception: ", e.what())));
  } catch (...) {
    return std::make_exception_ptr(
        Error(ErrorKind::kInternal, str_cat(queue, ": ", what, ": unknown exception")));
  }
}

// The first byte of `tensor` in host memory (cpu buffers are always host-visible).
char* host_bytes(const Tensor& tensor) {
  char* base = static_cast<char*>(tensor.buffer->host_data());
  PR_CHECK(base != nullptr) << "buffer on " << tensor.buffer->device_name()
                            << " is not host-visible";
  return base + tensor.offset;
}

}  // namespace

bool CpuEvent::query() {
  std::lock_guard<std::mutex> lock(timeline_->mutex);
  return timeline_->completed >= item_;
}

void CpuEvent::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(timeline_->mutex);
  auto done = [&] { return timeline_->completed >= item_; };
  if (timeout >= kForever) {
    timeline_->changed.wait(lock, done);
  } else if (!timeline_->changed.wait_for(lock, timeout, done)) {
    PR_FAIL(kTimeout, timeline_->name, ": event not complete after ", timeout.count(),
            " ms (", timeline_->completed, " of ", item_,
            " items done); the work before it is slow or blocked (a wait_for on an event that "
            "never completes, a stuck host_call)");
  }
  if (timeline_->error && timeline_->error_item <= item_) std::rethrow_exception(timeline_->error);
}

CpuQueue::CpuQueue(Device& device, std::string name)
    : device_(device), timeline_(std::make_shared<CpuQueueTimeline>(std::move(name))) {
  worker_ = std::thread([this] { run_worker(); });
}

CpuQueue::~CpuQueue() {
  {
    std::lock_guard<std::mutex> lock(timeline_->mutex);
    stopping_ = true;
  }
  work_ready_.notify_all();
  worker_.join();
  if (timeline_->error) {
    try {
      std::rethrow_exception(timeline_->error);
    } catch (const std::exception& e) {
      PR_LOG(kWarn) << "queue destroyed with an error nobody synchronized on: " << e.what();
    }
  }
}

void CpuQueue::run_worker() {
  for (;;) {
    Item item;
    bool skip;
    {
      std::unique_lock<std::mutex> lock(timeline_->mutex);
      work_ready_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and every item ran
      item = std::move(pending_.front());
      pending_.pop_front();
      skip = timeline_->error != nullptr;
    }
    std::exception_ptr error;
    if (!skip) {
      try {
        item.run();
      } catch (...) {
        error = describe_failure(timeline_->name, item.what);
      }
    }
    item.run = nullptr;  // release captures before the item counts as completed
    {
      std::lock_guard<std::mutex> lock(timeline_->mutex);
      ++timeline_->completed;
      if (error && !timeline_->error) {
        timeline_->error = std::move(error);
        timeline_->error_item = timeline_->completed;
      }
      error = nullptr;  // the worker keeps no reference once the error is published
    }
    timeline_->changed.notify_all();
  }
}

void CpuQueue::enqueue(std::string_view what, std::function<void()> run) {
  {
    std::lock_guard<std::mutex> lock(timeline_->mutex);
    PR_CHECK(!stopping_) << "work enqueued on " << timeline_->name << " while it is destroyed";
    pending_.push_back(Item{what, std::move(run)});
    ++enqueued_;
  }
  work_ready_.notify_one();
}

void CpuQueue::check_tensor(const Tensor& tensor, const char* role) const {
  PR_CHECK(tensor.buffer != nullptr) << role << " on " << timeline_->name << " has no buffer";
  if (tensor.buffer->device_name() != device_.name()) {
    PR_FAIL(kInvalidArgument, timeline_->name, ": ", role, " lives on ",
            tensor.buffer->device_name(), ", not on ", device_.name(),
            "; move it with a host copy (read, then write) first");
  }
}

void CpuQueue::launch(const Kernel& kernel, KernelArgs args) {
  const auto* cpu_kernel = dynamic_cast<const CpuKernel*>(&kernel);
  if (cpu_kernel == nullptr) {
    PR_FAIL(kInvalidArgument, timeline_->name, ": kernel '", kernel.name(),
            "' does not belong to the cpu backend; look it up with find_kernel() on ",
            device_.name());
  }
  enqueue(cpu_kernel->name(),
          [cpu_kernel, args = std::move(args)] { cpu_kernel->run(args); });
}

void CpuQueue::write(Tensor dst, const void* src) {
  check_tensor(dst, "write destination");
  PR_CHECK(src != nullptr || dst.bytes() == 0) << "write to " << timeline_->name;
  enqueue("write", [dst, src] {
    if (dst.bytes() > 0) std::memcpy(host_bytes(dst), src, dst.bytes());
  });
}

void CpuQueue::read(void* dst, Tensor src) {
  check_tensor(src, "read source");
  PR_CHECK(dst != nullptr || src.bytes() == 0) << "read from " << timeline_->name;
  enqueue("read", [dst, src] {
    if (src.bytes() > 0) std::memcpy(dst, host_bytes(src), src.bytes());
  });
}

void CpuQueue::copy(Tensor dst, Tensor src) {
  check_tensor(dst, "copy destination");
  check_tensor(src, "copy source");
  if (dst.bytes() != src.bytes()) {
    PR_FAIL(kInvalidArgument, timeline_->name, ": copy of ", src.shape, " ",
            dtype_name(src.dtype), " (", src.bytes(), " bytes) into ", dst.shape, " ",
            dtype_name(dst.dtype), " (", dst.bytes(), " bytes): sizes must match");
  }
  enqueue("copy", [dst, src] {
    if (src.bytes() == 0) return;
    std::memmove(host_bytes(dst), host_bytes(src), src.bytes());
  });
}

void CpuQueue::host_call(std::function<void()> fn) {
  PR_CHECK(fn != nullptr) << "host_call on " << timeline_->name;
  enqueue("host_call", std::move(fn));
}

std::unique_ptr<Event> CpuQueue::record() {
  std::lock_guard<std::mutex> lock(timeline_->mutex);
  return std::make_unique<CpuEvent>(timeline_, enqueued_);
}

void CpuQueue::wait_for(std::shared_ptr<Event> event) {
  PR_CHECK(event != nullptr) << "wait_for on " << timeline_->name;
  enqueue("wait_for", [event = std::move(event)] { event->wait(); });
}

void CpuQueue::synchronize() {
  PR_CHECK(std::this_thread::get_id() != worker_.get_id())
      << "synchronize() called by work running on " << timeline_->name
      << "; it would wait for itself";
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(timeline_->mutex);
    const uint64_t target = enqueued_;
    timeline_->changed.wait(lock, [&] { return timeline_->completed >= target; });
    error = std::exchange(timeline_->error, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace petaring
