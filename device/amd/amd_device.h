// The amd backend: an AMD GPU behind the Device interface (device/device.h).
//
// What a device is (AmdGpuInfo from discovery) is kept apart from how it is reached
// (GpuAccess: KfdAccess over /dev/kfd or the mock KFD today; a USB3 bridge later):
// AmdDevice only talks to a GpuAccess.
//   * memory: each Buffer is its own VRAM allocation mapped for the CPU too (needs
//     Resizable BAR for more than 256 MiB; the error says so), counted in memory_used().
//   * kernels: the gfx1100 code object built from device/amd/gpu/kernels.cl, loaded by
//     device/amd/code_object.h into executable VRAM once per device; the kernel table is
//     every kernel of device/kernels.h that the code object has.
//   * queues: AmdQueue (amd_queue.h), a PM4 compute ring and an SDMA copy ring each.
// TODO(hw): this backend has only run against the mock KFD.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "device/amd/code_object.h"
#include "device/amd/gpu_access.h"
#include "device/device.h"

namespace petaring::amd {

struct AmdDeviceOptions {
  int index = 0;                 // "amd:<index>"
  std::string code_object_path;  // "" = default_code_object_path()
  size_t ring_bytes = 64 << 10;  // per hardware ring
  size_t staging_bytes = 4 << 20;  // per queue, GTT, for host <-> device copies
  uint32_t first_signal_value = 0;  // where queue timelines start (tests of rollover)
  std::chrono::milliseconds timeout{120000};  // longest wait for one piece of GPU work
};

class AmdKernel : public Kernel {
 public:
  AmdKernel(const KernelInfo* info, uint64_t descriptor_address)
      : info_(info), descriptor_address_(descriptor_address) {}
  std::string_view name() const override { return info_->name; }
  const KernelInfo& info() const { return *info_; }
  uint64_t descriptor_address() const { return descriptor_address_; }
  uint64_t entry_address() const {
    return descriptor_address_ + static_cast<uint64_t>(info_->entry_byte_offset);
  }

 private:
  const KernelInfo* info_;  // owned by the device's CodeObject
  uint64_t descriptor_address_;
};

class AmdDevice : public Device {
 public:
  // Loads the code object (kNotFound with what to do when it was not built).
  AmdDevice(std::unique_ptr<GpuAccess> access, AmdDeviceOptions options);
  ~AmdDevice() override;

  const DeviceProperties& properties() const override { return properties_; }
  std::unique_ptr<Buffer> allocate(size_t bytes) override;
  uint64_t memory_used() const override { return used_->load(); }
  std::unique_ptr<Queue> create_queue(QueueKind kind) override;
  const Kernel* find_kernel(std::string_view name) const override;
  std::vector<std::string> kernel_names() const override;
  // Any kernel of the code object, the helpers that launch plans use included.
  const AmdKernel* find_gpu_kernel(std::string_view name) const;

  GpuAccess& access() { return *access_; }
  const AmdDeviceOptions& options() const { return options_; }
  const CodeObject& code_object() const { return *code_object_; }

 private:
  std::unique_ptr<GpuAccess> access_;
  AmdDeviceOptions options_;
  DeviceProperties properties_;
  std::shared_ptr<std::atomic<uint64_t>> used_;
  std::shared_ptr<const CodeObject> code_object_;
  GpuAllocation code_;
  std::vector<AmdKernel> kernels_;
  std::atomic<int> queues_created_{0};
};

// The GPUs of the sysfs topology at `sysfs_root`, each opened through KFD over `sys`
// (the kernel's, or a mock KFD); with `only` >= 0 just that one (the others are not
// touched, so a rank can open its GPU on a box of mixed GPUs). Throws kNotFound when
// there is no GPU (or no GPU `only`).
std::vector<std::unique_ptr<Device>> open_amd_devices(std::shared_ptr<SysInterface> sys,
                                                      const std::string& sysfs_root,
                                                      AmdDeviceOptions options = {},
                                                      int only = -1);

}  // namespace petaring::amd
