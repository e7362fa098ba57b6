// The cpu backend: "virtual GPUs" carved out of the host.
//
// A CpuDevice behaves like a GPU with its own memory, queues and kernel table, but all
// of it lives in the host process:
//   * memory: every Buffer is 64-byte aligned host memory, counted against the device's
//     budget (CpuDeviceOptions::memory_bytes). An allocation that would go past the
//     budget throws kOutOfMemory, exactly as a full GPU would, so that a recipe that
//     fits on the virtual GPU has a chance to fit on a real one. Destroying a Buffer
//     gives its bytes back. Buffers stay valid after their device is gone (they hold the
//     budget by shared ownership), but the device contract still asks callers to destroy
//     them first.
//   * queues: each CpuQueue (device/cpu/cpu_queue.h) owns one worker thread that runs its
//     work strictly in order; several queues of one device run concurrently.
//   * kernels: the table of device/cpu/cpu_kernels.h (plain loops the compiler
//     vectorizes; GEMM through petaring::cpu::sgemm).
//   * link: kHost. Copies cost a memcpy.
// TODO(perf): an optional simulated link (PCIe or USB3 bandwidth) that makes copies cost
// what they would on that link.
//
// Thread safety: allocate(), memory_used(), create_queue() and find_kernel() may be
// called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "device/cpu/cpu_kernels.h"
#include "device/device.h"

namespace petaring {

struct CpuDeviceOptions {
  int count = 1;                       // virtual GPUs to open (>= 1)
  uint64_t memory_bytes = 2ull << 30;  // budget per virtual GPU, bytes (> 0)
  // GEMM threads per device; 0 = host cores / count (at least 1). The GEMM library's
  // thread count is process-wide, so every device of one call shares this value.
  int threads = 0;
};

// What `petaring devices` says about the host itself.
struct HostInfo {
  std::string cpu_model;  // from /proc/cpuinfo, "" when unknown
  std::string arch;       // cpu_arch()
  int cores = 1;          // hardware threads the process may use
  uint64_t memory_bytes = 0;  // physical memory; 0 when unknown
  std::string blas;       // the GEMM library ("OpenBLAS")
};

// "x86_64 avx512f", "x86_64 avx2", "x86_64", "aarch64": the machine and the widest
// vector extension the running CPU supports.
std::string cpu_arch();
HostInfo describe_host();

// The bytes a budget (memory_bytes) counts; shared with the buffers so that a buffer's
// destruction returns its bytes even while the device is going away.
struct CpuMemoryBudget {
  explicit CpuMemoryBudget(uint64_t limit) : limit_bytes(limit) {}
  const uint64_t limit_bytes;
  std::atomic<uint64_t> used_bytes{0};
};

class CpuDevice : public Device {
 public:
  // `index` is the device's number within the cpu backend ("cpu:<index>").
  CpuDevice(int index, uint64_t memory_bytes);
  ~CpuDevice() override;

  const DeviceProperties& properties() const override { return properties_; }
  std::unique_ptr<Buffer> allocate(size_t bytes) override;
  uint64_t memory_used() const override;
  std::unique_ptr<Queue> create_queue(QueueKind kind) override;
  const Kernel* find_kernel(std::string_view name) const override;
  std::vector<std::string> kernel_names() const override;

 private:
  DeviceProperties properties_;
  std::shared_ptr<CpuMemoryBudget> budget_;
  std::vector<CpuKernel> kernels_;
  std::atomic<int> queues_created_{0};
};

// Opens options.count virtual GPUs named cpu:0 .. cpu:<count-1> and sets the GEMM
// library's thread count. Throws kInvalidArgument for a count < 1 or a zero budget.
std::vector<std::unique_ptr<Device>> open_cpu_devices(const CpuDeviceOptions& options);

}  // namespace petaring
