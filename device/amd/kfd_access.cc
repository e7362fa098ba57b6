#include "device/amd/kfd_access.h"

#include <fcntl.h>
#include <linux/kfd_ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::amd {
namespace {

constexpr size_t kPageBytes = 4096;
constexpr size_t kDoorbellPageBytes = 0x2000;  // doorbell offsets are 8 KiB-page relative
constexpr uint32_t kDefaultQueuePriority = 7;

size_t round_up(size_t value, size_t to) { return (value + to - 1) / to * to; }

std::string hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

// Opens `path`; throws with the usual cause of the failure.
int open_device_file(SysInterface& sys, const std::string& path, const std::string& gpu) {
  const int fd = sys.open(path, O_RDWR);
  if (fd >= 0) return fd;
  if (fd == -EACCES || fd == -EPERM) {
    PR_FAIL(kPermissionDenied, gpu, ": cannot open ", path, ": ", errno_text(fd),
            ". Add your user to the groups owning it (usually 'render' and 'video': sudo "
            "usermod -aG render,video $USER, then log in again)");
  }
  if (fd == -ENOENT || fd == -ENODEV || fd == -ENXIO) {
    PR_FAIL(kNotFound, gpu, ": ", path, " is missing: ", errno_text(fd),
            ". Is the amdgpu kernel driver loaded (lsmod | grep amdgpu) and does the kernel "
            "have CONFIG_HSA_AMD?");
  }
  PR_FAIL(kFailedPrecondition, gpu, ": cannot open ", path, ": ", errno_text(fd));
}

}  // namespace

const char* memory_kind_name(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kVram: return "VRAM";
    case MemoryKind::kGtt: return "GTT";
    case MemoryKind::kUserptr: return "userptr";
  }
  return "?";
}

KfdAccess::KfdAccess(std::shared_ptr<SysInterface> sys, AmdGpuInfo gpu)
    : sys_(std::move(sys)), gpu_(std::move(gpu)) {
  open_device_files();
}

KfdAccess::~KfdAccess() {
  if (event_page_.address != nullptr) {
    try {
      free(event_page_);
    } catch (const std::exception& e) {
      PR_LOG(kWarn) << gpu_.arch << ": freeing the event page failed: " << e.what();
    }
  }
  if (doorbell_page_ != nullptr) sys_->munmap(doorbell_page_, kDoorbellPageBytes);
  if (render_fd_ >= 0) sys_->close(render_fd_);
  if (kfd_fd_ >= 0) sys_->close(kfd_fd_);
}

std::string KfdAccess::describe() const {
  return str_cat("KFD ", version_major_, ".", version_minor_, " via ", kKfdPath, " and ",
                 gpu_.render_node());
}

int KfdAccess::checked_ioctl(unsigned long request, void* arg, const char* what) {
  const int rc = sys_->ioctl(kfd_fd_, request, arg);
  if (rc < 0) {
    PR_FAIL(kFailedPrecondition, gpu_.arch, " (gpu_id ", gpu_.gpu_id, "): KFD ", what,
            " failed: ", errno_text(rc));
  }
  return rc;
}

void KfdAccess::open_device_files() {
  const std::string who = str_cat("AMD GPU ", gpu_.product, " at ", gpu_.pci_address);
  kfd_fd_ = open_device_file(*sys_, kKfdPath, who);
  render_fd_ = open_device_file(*sys_, gpu_.render_node(), who);
  kfd_ioctl_get_version_args version{};
  checked_ioctl(AMDKFD_IOC_GET_VERSION, &version, "GET_VERSION");
  version_major_ = version.major_version;
  version_minor_ = version.minor_version;
  if (version_major_ != 1 || version_minor_ < 2) {
    PR_FAIL(kFailedPrecondition, who, ": KFD interface ", version_major_, ".", version_minor_,
            " is not supported (need 1.2 or later in the 1.x line); update the kernel");
  }
  kfd_ioctl_acquire_vm_args acquire{};
  acquire.drm_fd = static_cast<uint32_t>(render_fd_);
  acquire.gpu_id = gpu_.gpu_id;
  checked_ioctl(AMDKFD_IOC_ACQUIRE_VM, &acquire, "ACQUIRE_VM");
  memory_event_ = create_event(KFD_IOC_EVENT_MEMORY);
  hw_exception_event_ = create_event(KFD_IOC_EVENT_HW_EXCEPTION);
  PR_LOG(kDebug) << who << ": opened through " << describe();
}

uint32_t KfdAccess::create_event(uint32_t type) {
  kfd_ioctl_create_event_args args{};
  args.event_type = type;
  args.node_id = static_cast<uint32_t>(gpu_.node);
  checked_ioctl(AMDKFD_IOC_CREATE_EVENT, &args, "CREATE_EVENT");
  return args.event_id;
}

void KfdAccess::map_to_gpu(uint64_t handle, bool map, const char* what) {
  uint32_t ids[1] = {gpu_.gpu_id};
  if (map) {
    kfd_ioctl_map_memory_to_gpu_args args{};
    args.handle = handle;
    args.device_ids_array_ptr = reinterpret_cast<uint64_t>(ids);
    args.n_devices = 1;
    checked_ioctl(AMDKFD_IOC_MAP_MEMORY_TO_GPU, &args, what);
  } else {
    kfd_ioctl_unmap_memory_from_gpu_args args{};
    args.handle = handle;
    args.device_ids_array_ptr = reinterpret_cast<uint64_t>(ids);
    args.n_devices = 1;
    checked_ioctl(AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &args, what);
  }
}

GpuAllocation KfdAccess::allocate(size_t bytes, MemoryKind kind, bool host_visible,
                                  bool executable) {
  PR_CHECK(kind != MemoryKind::kUserptr) << "use register_host_memory for userptr memory";
  GpuAllocation a;
  a.kind = kind;
  a.size = round_up(bytes == 0 ? 1 : bytes, kPageBytes);
  a.host_visible = host_visible || kind == MemoryKind::kGtt;
  // TODO(perf): align VRAM reservations to 2 MiB so the GPU can use large pages.
  void* va = nullptr;
  int rc = sys_->mmap(nullptr, a.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0, &va);
  if (rc < 0) {
    PR_FAIL(kOutOfMemory, gpu_.arch, ": cannot reserve ", format_bytes(a.size),
            " of address space: ", errno_text(rc));
  }
  kfd_ioctl_alloc_memory_of_gpu_args args{};
  args.va_addr = reinterpret_cast<uint64_t>(va);
  args.size = a.size;
  args.gpu_id = gpu_.gpu_id;
  args.flags = KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE | KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE;
  if (executable) args.flags |= KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE;
  if (kind == MemoryKind::kVram) {
    args.flags |= KFD_IOC_ALLOC_MEM_FLAGS_VRAM;
    if (host_visible) args.flags |= KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC;
  } else {
    args.flags |= KFD_IOC_ALLOC_MEM_FLAGS_GTT | KFD_IOC_ALLOC_MEM_FLAGS_COHERENT |
                  KFD_IOC_ALLOC_MEM_FLAGS_UNCACHED;
  }
  rc = sys_->ioctl(kfd_fd_, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &args);
  if (rc < 0) {
    sys_->munmap(va, a.size);
    const std::string what = str_cat(gpu_.arch, " (", gpu_.pci_address, "): cannot allocate ",
                                     format_bytes(a.size), " of ", memory_kind_name(kind), ": ",
                                     errno_text(rc));
    if (rc == -ENOMEM || rc == -ENOSPC) {
      PR_FAIL(kOutOfMemory, what, kind == MemoryKind::kVram
                                      ? str_cat("; out of VRAM (", format_bytes(gpu_.vram_bytes),
                                                " in all): free buffers or lower the batch size")
                                      : "; out of GTT (pinned host memory): free buffers or "
                                        "raise the amdgpu.gttsize limit");
    }
    if (rc == -EINVAL && kind == MemoryKind::kVram && host_visible) {
      PR_FAIL(kFailedPrecondition, what,
              "; CPU-visible VRAM was refused, which usually means Resizable BAR is off: "
              "enable 'Above 4G decoding' and 'Resizable BAR' in the firmware setup");
    }
    PR_FAIL(kFailedPrecondition, what);
  }
  a.address = va;
  a.handle = args.handle;
  if (a.host_visible) {
    void* mapped = nullptr;
    rc = sys_->mmap(va, a.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, render_fd_,
                    static_cast<off_t>(args.mmap_offset), &mapped);
    if (rc < 0 || mapped != va) {
      kfd_ioctl_free_memory_of_gpu_args free_args{args.handle};
      sys_->ioctl(kfd_fd_, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &free_args);
      sys_->munmap(va, a.size);
      PR_FAIL(kFailedPrecondition, gpu_.arch, ": cannot map ", format_bytes(a.size), " of ",
              memory_kind_name(kind), " for the CPU: ", errno_text(rc),
              kind == MemoryKind::kVram
                  ? "; VRAM past the BAR cannot be mapped: enable Resizable BAR in the firmware"
                  : "");
    }
  }
  map_to_gpu(a.handle, true, "MAP_MEMORY_TO_GPU");
  return a;
}

GpuAllocation KfdAccess::register_host_memory(void* address, size_t bytes) {
  const auto start = reinterpret_cast<uint64_t>(address);
  if (start % kPageBytes != 0 || bytes % kPageBytes != 0 || bytes == 0) {
    PR_FAIL(kInvalidArgument, gpu_.arch, ": host memory at ", hex(start), " (", bytes,
            " bytes) must be page aligned and a whole number of pages to register");
  }
  kfd_ioctl_alloc_memory_of_gpu_args args{};
  args.va_addr = start;
  args.size = bytes;
  args.gpu_id = gpu_.gpu_id;
  args.mmap_offset = start;
  args.flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE |
               KFD_IOC_ALLOC_MEM_FLAGS_COHERENT;
  const int rc = sys_->ioctl(kfd_fd_, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &args);
  if (rc < 0) {
    throw Error(rc == -ENOMEM ? ErrorKind::kOutOfMemory : ErrorKind::kFailedPrecondition,
                str_cat(gpu_.arch, ": cannot register ", format_bytes(bytes),
                        " of host memory at ", hex(start), ": ", errno_text(rc),
                        "; the pages must be mapped and the locked-memory limit (ulimit -l) "
                        "large enough"));
  }
  GpuAllocation a;
  a.address = address;
  a.size = bytes;
  a.kind = MemoryKind::kUserptr;
  a.host_visible = true;
  a.handle = args.handle;
  map_to_gpu(a.handle, true, "MAP_MEMORY_TO_GPU (userptr)");
  return a;
}

void KfdAccess::free(const GpuAllocation& a) {
  if (a.address == nullptr) return;
  map_to_gpu(a.handle, false, "UNMAP_MEMORY_FROM_GPU");
  kfd_ioctl_free_memory_of_gpu_args args{a.handle};
  checked_ioctl(AMDKFD_IOC_FREE_MEMORY_OF_GPU, &args, "FREE_MEMORY_OF_GPU");
  if (a.kind != MemoryKind::kUserptr) sys_->munmap(a.address, a.size);
}

HardwareQueue KfdAccess::create_queue(const HardwareQueueSetup& setup) {
  kfd_ioctl_create_queue_args args{};
  args.ring_base_address = setup.ring.gpu_address();
  args.ring_size = static_cast<uint32_t>(setup.ring.size);
  args.write_pointer_address = reinterpret_cast<uint64_t>(setup.write_pointer);
  args.read_pointer_address = reinterpret_cast<uint64_t>(setup.read_pointer);
  args.gpu_id = gpu_.gpu_id;
  args.queue_type = setup.kind == HardwareQueueKind::kSdma ? KFD_IOC_QUEUE_TYPE_SDMA
                                                           : KFD_IOC_QUEUE_TYPE_COMPUTE;
  args.queue_percentage = KFD_MAX_QUEUE_PERCENTAGE;
  args.queue_priority = kDefaultQueuePriority;
  if (setup.kind == HardwareQueueKind::kComputePm4) {
    args.eop_buffer_address = setup.eop_buffer.gpu_address();
    args.eop_buffer_size = setup.eop_buffer.size;
    args.ctx_save_restore_address = setup.context_save.gpu_address();
    args.ctx_save_restore_size = setup.context_save_bytes;  // context_save_sizes()
    args.ctl_stack_size = setup.control_stack_bytes;
  }
  checked_ioctl(AMDKFD_IOC_CREATE_QUEUE, &args, "CREATE_QUEUE");
  std::lock_guard<std::mutex> lock(doorbell_mutex_);
  const uint64_t page_offset = args.doorbell_offset & ~uint64_t{kDoorbellPageBytes - 1};
  if (doorbell_page_ == nullptr) {
    const int rc = sys_->mmap(nullptr, kDoorbellPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                              kfd_fd_, static_cast<off_t>(page_offset), &doorbell_page_);
    if (rc < 0) {
      doorbell_page_ = nullptr;
      kfd_ioctl_destroy_queue_args destroy{args.queue_id, 0};
      sys_->ioctl(kfd_fd_, AMDKFD_IOC_DESTROY_QUEUE, &destroy);
      PR_FAIL(kFailedPrecondition, gpu_.arch, ": cannot map the doorbell page of ", kKfdPath,
              ": ", errno_text(rc));
    }
    doorbell_page_offset_ = page_offset;
  }
  PR_CHECK_EQ(page_offset, doorbell_page_offset_) << "queues of one process share a doorbell page";
  HardwareQueue queue;
  queue.id = args.queue_id;
  queue.doorbell = reinterpret_cast<volatile uint64_t*>(
      static_cast<char*>(doorbell_page_) + (args.doorbell_offset & (kDoorbellPageBytes - 1)));
  return queue;
}

void KfdAccess::destroy_queue(const HardwareQueue& queue) {
  kfd_ioctl_destroy_queue_args args{queue.id, 0};
  checked_ioctl(AMDKFD_IOC_DESTROY_QUEUE, &args, "DESTROY_QUEUE");
}

void KfdAccess::ring_doorbell(const HardwareQueue& queue, uint64_t write_pointer) {
  sys_->write_doorbell(queue.doorbell, write_pointer);
}

GpuEvent KfdAccess::create_signal_event() {
  std::lock_guard<std::mutex> lock(event_mutex_);
  if (signal_events_refused_) return {};
  if (event_page_.address == nullptr) {
    // One 64-bit slot per signal event KFD can hold; KFD maps it and resets slots to
    // "unsignaled" (all ones).
    event_page_ = allocate(KFD_SIGNAL_EVENT_LIMIT * 8, MemoryKind::kGtt, true);
  }
  kfd_ioctl_create_event_args args{};
  args.event_type = KFD_IOC_EVENT_SIGNAL;
  args.auto_reset = 1;
  args.node_id = static_cast<uint32_t>(gpu_.node);
  args.event_page_offset = event_page_.handle;
  const int rc = sys_->ioctl(kfd_fd_, AMDKFD_IOC_CREATE_EVENT, &args);
  if (rc < 0 || args.event_slot_index >= KFD_SIGNAL_EVENT_LIMIT) {
    signal_events_refused_ = true;
    PR_LOG(kWarn) << gpu_.arch << " (" << gpu_.pci_address << "): KFD refused a signal event ("
                  << (rc < 0 ? errno_text(rc) : str_cat("slot ", args.event_slot_index))
                  << "); waits poll and sleep in short slices instead";
    return {};
  }
  return GpuEvent{args.event_id, event_page_.gpu_address() + uint64_t{args.event_slot_index} * 8};
}

void KfdAccess::destroy_event(const GpuEvent& event) {
  if (!event.valid()) return;
  kfd_ioctl_destroy_event_args args{};
  args.event_id = event.id;
  checked_ioctl(AMDKFD_IOC_DESTROY_EVENT, &args, "DESTROY_EVENT");
}

void KfdAccess::sleep_for_event(std::chrono::milliseconds timeout, const GpuEvent& signal) {
  kfd_event_data events[3]{};
  events[0].event_id = memory_event_;
  events[1].event_id = hw_exception_event_;
  events[2].event_id = signal.id;
  kfd_ioctl_wait_events_args args{};
  args.events_ptr = reinterpret_cast<uint64_t>(events);
  args.num_events = signal.valid() ? 3 : 2;
  args.wait_for_all = 0;
  args.timeout = static_cast<uint32_t>(timeout.count());
  checked_ioctl(AMDKFD_IOC_WAIT_EVENTS, &args, "WAIT_EVENTS");
  if (args.wait_result != KFD_IOC_WAIT_RESULT_COMPLETE) return;
  // KFD copies back the data of the fault events that fired: a memory fault's address
  // and cause, a hardware exception's gpu_id. Neither: the signal event woke us.
  const auto& exception = events[1].hw_exception_data;
  const auto& memory = events[0].memory_exception_data;
  const bool memory_fault = memory.va != 0 || memory.failure.NotPresent ||
                            memory.failure.ReadOnly || memory.failure.NoExecute;
  if (signal.valid() && !memory_fault && exception.gpu_id == 0) return;
  const auto fault = sys_->fault_detail();
  const std::string detail = fault ? fault->message : "";
  const ErrorKind kind = fault ? fault->kind : ErrorKind::kFailedPrecondition;
  if (memory_fault) {
    throw Error(kind, str_cat(gpu_.arch, " (", gpu_.pci_address, "): GPU memory fault at ",
            hex(memory.va), memory.failure.NotPresent ? " (page not mapped)" : "",
            memory.failure.ReadOnly ? " (write to read-only memory)" : "",
            memory.failure.NoExecute ? " (execute from non-executable memory)" : "",
            detail.empty() ? "" : ": ", detail,
            "; a kernel or copy used an address outside its buffers"));
  }
  throw Error(kind, str_cat(gpu_.arch, " (", gpu_.pci_address,
                            "): the GPU stopped the queue (hardware exception)",
                            detail.empty() ? "" : ": ", detail));
}

}  // namespace petaring::amd
