// KfdAccess: GpuAccess through the amdgpu kernel driver's KFD interface (/dev/kfd plus
// the GPU's render node), every call made through a SysInterface so that the mock KFD
// (device/amd/mock/mock_kfd.h) can stand in for the kernel.
//
// The path, in order (numbers are the ioctl `nr` of linux/kfd_ioctl.h, base 'K'):
//   open /dev/kfd and /dev/dri/renderD<minor>; GET_VERSION (0x01); ACQUIRE_VM (0x15);
//   CREATE_EVENT (0x08) for memory faults and hardware exceptions;
//   memory: reserve the VA (anonymous PROT_NONE mmap), ALLOC_MEMORY_OF_GPU (0x16) at that
//   VA, mmap the render node at the returned offset with MAP_FIXED (host-visible only),
//   MAP_MEMORY_TO_GPU (0x18); free: UNMAP (0x19), munmap, FREE_MEMORY_OF_GPU (0x17);
//   queues: CREATE_QUEUE (0x02) / DESTROY_QUEUE (0x03); doorbells: mmap /dev/kfd at the
//   page of the returned doorbell offset, once, shared by the process's queues;
//   signal events: the first CREATE_EVENT of type SIGNAL hands KFD the event page (a
//   GTT allocation of KFD_SIGNAL_EVENT_LIMIT 64-bit slots, its handle in
//   event_page_offset); each event gets a slot (its mailbox); DESTROY_EVENT (0x09);
//   sleeping: WAIT_EVENTS (0x0C) on the fault events and, for a signal wait, its event.
// Not done: RUNTIME_ENABLE (0x25). KFD 1.14 and later expects it before queues are
// created when a debugger may attach; the Debian 12 header is 1.11 and has neither the
// ioctl nor its args struct (kfd_ioctl_runtime_enable_args: r_debug address,
// mode_mask KFD_RUNTIME_ENABLE_MODE_ENABLE_MASK, capabilities_mask out). Supporting it
// means carrying that struct and request number here, calling it after ACQUIRE_VM when
// GET_VERSION says >= 1.14, and treating -EBUSY (a debugger owns the process) as an
// error that says so. TODO(hw): nothing here has run against a real /dev/kfd.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "device/amd/gpu_access.h"
#include "device/amd/sys.h"

namespace petaring::amd {

inline constexpr const char* kKfdPath = "/dev/kfd";

class KfdAccess : public GpuAccess {
 public:
  // Opens the GPU; throws kPermissionDenied / kNotFound / kFailedPrecondition with what
  // to do when /dev/kfd or the render node cannot be used.
  KfdAccess(std::shared_ptr<SysInterface> sys, AmdGpuInfo gpu);
  ~KfdAccess() override;

  const AmdGpuInfo& gpu() const override { return gpu_; }
  std::string describe() const override;

  GpuAllocation allocate(size_t bytes, MemoryKind kind, bool host_visible,
                         bool executable = false) override;
  GpuAllocation register_host_memory(void* address, size_t bytes) override;
  void free(const GpuAllocation& allocation) override;

  HardwareQueue create_queue(const HardwareQueueSetup& setup) override;
  void destroy_queue(const HardwareQueue& queue) override;
  void ring_doorbell(const HardwareQueue& queue, uint64_t write_pointer) override;
  GpuEvent create_signal_event() override;
  void destroy_event(const GpuEvent& event) override;
  void sleep_for_event(std::chrono::milliseconds timeout,
                       const GpuEvent& signal = GpuEvent{}) override;

  SysInterface& sys() { return *sys_; }

 private:
  void open_device_files();
  uint32_t create_event(uint32_t type);
  void map_to_gpu(uint64_t handle, bool map, const char* what);
  // An ioctl that must succeed; throws naming `what` and the errno otherwise.
  int checked_ioctl(unsigned long request, void* arg, const char* what);

  std::shared_ptr<SysInterface> sys_;
  AmdGpuInfo gpu_;
  int kfd_fd_ = -1;
  int render_fd_ = -1;
  uint32_t version_major_ = 0, version_minor_ = 0;
  uint32_t memory_event_ = 0, hw_exception_event_ = 0;
  std::mutex event_mutex_;
  GpuAllocation event_page_;       // guarded by event_mutex_; the first signal event makes it
  bool signal_events_refused_ = false;  // guarded by event_mutex_
  std::mutex doorbell_mutex_;
  void* doorbell_page_ = nullptr;  // guarded by doorbell_mutex_
  uint64_t doorbell_page_offset_ = 0;
};

}  // namespace petaring::amd
