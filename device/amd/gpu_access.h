// GpuAccess: how the amd backend reaches one GPU. The device (amd_device.h) is written
// against this interface only, so that the path to the GPU can change without touching
// it: KfdAccess (kfd_access.h) talks to the amdgpu kernel driver through /dev/kfd and the
// render node (or to the mock KFD in tests, through the same SysInterface); a later USB3
// bridge path (TLPs over libusb, GPU initialised from user space) implements it too.
//
// Addresses: GPU virtual address = CPU virtual address for every allocation, so a
// pointer is meaningful to both sides. Memory the CPU cannot touch (VRAM outside the
// BAR) still has a GPU address but host_visible == false.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "device/amd/topology.h"

namespace petaring::amd {

enum class MemoryKind {
  kVram,     // device memory; host-visible through the BAR when asked for
  kGtt,      // host memory the GPU reaches over the link, coherent and uncached (rings, signals)
  kUserptr,  // existing host memory registered with the GPU
};
const char* memory_kind_name(MemoryKind kind);  // "VRAM", "GTT", "userptr"

struct GpuAllocation {
  void* address = nullptr;  // GPU VA = CPU VA
  size_t size = 0;          // bytes, rounded up to whole pages
  MemoryKind kind = MemoryKind::kVram;
  bool host_visible = false;
  uint64_t handle = 0;      // the access path's own id

  uint64_t gpu_address() const { return reinterpret_cast<uint64_t>(address); }
};

enum class HardwareQueueKind { kComputePm4, kSdma };

// What a user-mode queue needs: a ring and its pointers, all in GPU-mapped memory.
struct HardwareQueueSetup {
  HardwareQueueKind kind = HardwareQueueKind::kComputePm4;
  GpuAllocation ring;              // power-of-two bytes, >= 1 KiB
  volatile uint64_t* read_pointer = nullptr;   // written by the engine, in bytes (GTT)
  volatile uint64_t* write_pointer = nullptr;  // written by the host, in bytes (GTT)
  GpuAllocation eop_buffer;        // compute queues only
  GpuAllocation context_save;      // compute queues only: save area, then debugger area
  uint32_t context_save_bytes = 0;   // the save area (ctx_save_restore_size)
  uint32_t control_stack_bytes = 0;  // its control stack part (ctl_stack_size)
};

struct HardwareQueue {
  uint32_t id = 0;
  volatile uint64_t* doorbell = nullptr;  // write the new write pointer here
};

// A signal event (KFD's CREATE_EVENT of type SIGNAL): work that completes writes `id`
// into `mailbox` (the event's slot of the event page) and raises an interrupt whose
// context id is `id`; a host thread sleeping on the event wakes. Invalid when the access
// path has no such events: waits then poll and sleep in short slices.
struct GpuEvent {
  uint32_t id = 0;
  uint64_t mailbox = 0;  // GPU address of the 64-bit slot
  bool valid() const { return mailbox != 0; }
};

class GpuAccess {
 public:
  GpuAccess() = default;
  GpuAccess(const GpuAccess&) = delete;
  GpuAccess& operator=(const GpuAccess&) = delete;
  virtual ~GpuAccess() = default;

  virtual const AmdGpuInfo& gpu() const = 0;
  // "KFD 1.11 via /dev/kfd and /dev/dri/renderD128"
  virtual std::string describe() const = 0;

  // Allocates `bytes` of `kind` memory (not kUserptr), maps it for the GPU and, when
  // `host_visible`, for the CPU at the same address. Blocking. Throws kOutOfMemory when
  // the memory is not there, kFailedPrecondition with the usual cause otherwise.
  virtual GpuAllocation allocate(size_t bytes, MemoryKind kind, bool host_visible,
                                 bool executable = false) = 0;
  // Registers existing page-aligned host memory with the GPU (kUserptr).
  virtual GpuAllocation register_host_memory(void* address, size_t bytes) = 0;
  // Unmaps and frees; the allocation must not be in use by queued work.
  virtual void free(const GpuAllocation& allocation) = 0;

  virtual HardwareQueue create_queue(const HardwareQueueSetup& setup) = 0;
  virtual void destroy_queue(const HardwareQueue& queue) = 0;
  // Publishes `write_pointer` (bytes) to the engine. Ring contents and the write pointer
  // in memory must already be written.
  virtual void ring_doorbell(const HardwareQueue& queue, uint64_t write_pointer) = 0;

  // A new signal event, or an invalid one when the path offers none (then it says why
  // once in the log). Give it back with destroy_event.
  virtual GpuEvent create_signal_event() { return {}; }
  virtual void destroy_event(const GpuEvent& event) { (void)event; }

  // Sleeps until the GPU reports a fault, `signal` (when valid) fires, or `timeout`
  // passes; returns in the latter two cases. Throws kFailedPrecondition when the GPU
  // reported a memory fault or a queue/hardware exception, naming the address and what
  // it means.
  virtual void sleep_for_event(std::chrono::milliseconds timeout,
                               const GpuEvent& signal = GpuEvent{}) = 0;
};

}  // namespace petaring::amd
