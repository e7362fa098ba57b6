// The device layer, read this first. In order:
//   DeviceProperties  what a device is (name, kind, arch, memory, link)
//   Buffer            device memory (runtime/tensor.h), owned by std::unique_ptr
//   Kernel            an entry of a device's named kernel table (contracts: device/kernels.h)
//   Event             a point in a queue's timeline to poll or wait on
//   Queue             an in-order stream of work (kernels, copies, host callbacks)
//   Device            allocates buffers, creates queues, looks up kernels
// Backends live in sub-folders (device/cpu/ today). A backend that lacks a kernel returns
// nullptr from find_kernel(); callers turn that into an kUnimplemented error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tensor.h"

namespace petaring {

enum class LinkKind { kHost, kPcie, kUsb3 };

// How the host reaches the device. kHost: memory is the host's own (cpu backend).
struct Link {
  LinkKind kind = LinkKind::kHost;
  int pcie_gen = 0;           // kPcie only
  int pcie_width = 0;         // kPcie only, lanes
  double bandwidth_gbps = 0;  // GB/s one way; 0 = not limited / unknown
  std::string to_string() const;  // "host", "PCIe 4.0 x16 (31.5 GB/s)", "USB3 (1.0 GB/s)"
};

struct DeviceProperties {
  std::string name;  // unique in the process: "cpu:0", "amd:1"
  std::string kind;  // backend: "cpu", "amd"
  std::string arch;  // "x86_64 avx512f", "gfx1100"
  int index = 0;     // within its backend
  uint64_t memory_bytes = 0;  // the budget (cpu) or VRAM size (gpu)
  Link link;
};

// Arguments of one kernel launch. The order and meaning of tensors, floats and ints is
// the kernel's contract, written beside its wrapper in device/kernels.h.
struct KernelArgs {
  std::vector<Tensor> tensors;
  std::vector<double> floats;
  std::vector<int64_t> ints;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual std::string_view name() const = 0;
};

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  virtual ~Event() = default;
  // True once every piece of work recorded before this event has finished. Non-blocking.
  virtual bool query() = 0;
  // Blocks until query() is true. Rethrows the first error raised by work before the
  // event. Throws kTimeout (naming the device and queue) when `timeout` passes first.
  virtual void wait(std::chrono::milliseconds timeout = std::chrono::hours(24 * 365)) = 0;
};

class Device;

class Queue {
 public:
  Queue() = default;
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  virtual ~Queue() = default;  // waits for enqueued work to finish

  virtual Device& device() = 0;
  virtual std::string name() const = 0;  // "cpu:0/compute"

  // Every call below enqueues and returns at once; work runs in enqueue order. Tensors
  // and host pointers passed in must stay valid until the work completes (synchronize(),
  // or wait on an event recorded after it). Errors raised by work surface at the next
  // synchronize() or Event::wait() on this queue.
  virtual void launch(const Kernel& kernel, KernelArgs args) = 0;
  virtual void write(Tensor dst, const void* src) = 0;  // host -> device, dst.bytes()
  virtual void read(void* dst, Tensor src) = 0;         // device -> host, src.bytes()
  virtual void copy(Tensor dst, Tensor src) = 0;        // same device; sizes must match
  // Runs `fn` on the queue's timeline (e.g. a collective on a communication queue).
  virtual void host_call(std::function<void()> fn) = 0;

  // An event that completes when all work enqueued so far has completed.
  virtual std::unique_ptr<Event> record() = 0;
  // Work enqueued after this call starts only once `event` (of any queue) completes.
  virtual void wait_for(std::shared_ptr<Event> event) = 0;
  // Blocks until all enqueued work has completed; rethrows the first error raised.
  virtual void synchronize() = 0;
};

enum class QueueKind { kCompute, kCopy };

class Device {
 public:
  Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  virtual ~Device() = default;  // buffers and queues must be destroyed first

  virtual const DeviceProperties& properties() const = 0;
  const std::string& name() const { return properties().name; }

  // Allocates `bytes` of device memory (contents unspecified). Throws kOutOfMemory naming
  // the device, the size asked and what is free when the budget would be exceeded.
  virtual std::unique_ptr<Buffer> allocate(size_t bytes) = 0;
  virtual uint64_t memory_used() const = 0;

  virtual std::unique_ptr<Queue> create_queue(QueueKind kind) = 0;

  // The named kernel table. nullptr when this device has no kernel of that name.
  virtual const Kernel* find_kernel(std::string_view name) const = 0;
  virtual std::vector<std::string> kernel_names() const = 0;
};

// Human-readable byte counts: "1.5 GiB", "512 MiB", "123 B".
std::string format_bytes(uint64_t bytes);
// Parses "4GiB", "512MiB", "1.5 GB", "1024" (bytes). Returns false on bad input.
bool parse_bytes(std::string_view text, uint64_t* bytes);

// For kernel implementations: PR_CHECK that `args` holds exactly this many tensors,
// floats and ints, naming `kernel` and both counts otherwise.
void expect_kernel_args(const KernelArgs& args, size_t tensors, size_t floats, size_t ints,
                        std::string_view kernel);

}  // namespace petaring
