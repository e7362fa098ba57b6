// AmdQueue: a Queue of the amd backend. The host-side timeline (ordering, events,
// wait_for, error reporting, draining destructor) is CpuQueue's, whose worker thread
// here submits each piece of work to the GPU and waits for it before taking the next:
//   launch      kernargs into a GTT slot, then on the PM4 ring: ACQUIRE_MEM, SET_SH_REG
//               (program address, RSRC1/2/3, kernarg pointer, workgroup size),
//               DISPATCH_DIRECT, EVENT_WRITE (CS_PARTIAL_FLUSH), RELEASE_MEM of the
//               timestamp and the signal.
//   write/read  through a GTT staging buffer, in chunks: memcpy, then SDMA COPY_LINEAR,
//               TIMESTAMP and FENCE on the copy ring (read: the other way round).
//   copy        SDMA COPY_LINEAR between the buffers.
// One signal per queue counts submissions (modulo 2^32). A GPU fault or timeout raises
// an error naming the queue and its ring state; the hardware rings are then recreated so
// that later work runs again.
// TODO(perf): submit without waiting for each item; batch packets per doorbell.
#pragma once

#include <memory>
#include <string>

#include "device/amd/amd_device.h"
#include "device/amd/hw_queue.h"
#include "device/amd/launch_plan.h"
#include "device/cpu/cpu_queue.h"

namespace petaring::amd {

class AmdQueue : public CpuQueue {
 public:
  AmdQueue(AmdDevice& device, std::string name);
  ~AmdQueue() override;

  void launch(const Kernel& kernel, KernelArgs args) override;
  void write(Tensor dst, const void* src) override;
  void read(void* dst, Tensor src) override;
  void copy(Tensor dst, Tensor src) override;

 private:
  struct Hardware;
  void check_tensor(const Tensor& tensor, const char* role) const;
  uint64_t address(const Tensor& tensor) const;
  // Runs on the worker.
  void run_kernel(const AmdKernel& kernel, const KernelArgs& args);
  void dispatch(const AmdKernel& kernel, const LaunchPlan& plan, const KernelArgs& args);
  void sdma_copy(uint64_t dst, uint64_t src, uint64_t bytes, const char* what);
  void submit_compute(std::vector<uint32_t> dwords, const std::string& what);
  void submit_copy(std::vector<uint32_t> dwords, const std::string& what);
  void finish(HwQueue& ring, const std::string& what);

  AmdDevice& amd_;
  std::unique_ptr<Hardware> hw_;  // used by the worker only
};

}  // namespace petaring::amd
