#include "device/amd/mock/mock_kfd.h"

#include <fcntl.h>
#include <linux/kfd_ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "device/amd/hw_queue.h"
#include "device/amd/mock/mock_executor.h"
#include "runtime/check.h"
#include "runtime/log.h"

namespace petaring::amd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kDoorbellPageBytes = 0x2000;
constexpr uint64_t kDoorbellMmapOffset = 0x7c00000000ull;  // page aligned, far from BOs
constexpr uint64_t kSmallBarBytes = 256ull << 20;
constexpr uint32_t kMemTypes = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT |
                               KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL |
                               KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP;

bool one_bit(uint32_t bits) { return bits != 0 && (bits & (bits - 1)) == 0; }

}  // namespace

struct MockKfd::Queue {
  MockRing ring;
  uint32_t type = 0;
  uint32_t doorbell_index = 0;
};

MockKfd::MockKfd(MockKfdOptions options)
    : options_(std::move(options)), files_(make_real_sys()) {
  gpus_ = discover_amd_gpus(*files_, options_.sysfs_root);
  executor_ = std::make_unique<MockExecutor>(*this, options_.dispatch);
}

MockKfd::~MockKfd() {
  if (doorbell_page_ != nullptr) std::free(doorbell_page_);
}

std::vector<AmdGpuInfo> MockKfd::gpus() {
  auto gpus = gpus_;
  if (options_.vram_bytes > 0) {
    for (auto& gpu : gpus) gpu.vram_bytes = options_.vram_bytes;
  }
  return gpus;
}

bool MockKfd::gpu_known(uint32_t gpu_id) const {
  for (const auto& gpu : gpus_) {
    if (gpu.gpu_id == gpu_id) return true;
  }
  return false;
}

uint64_t MockKfd::vram_limit(uint32_t gpu_id) const {
  if (options_.vram_bytes > 0) return options_.vram_bytes;
  for (const auto& gpu : gpus_) {
    if (gpu.gpu_id == gpu_id) return gpu.vram_bytes;
  }
  return 0;
}

int MockKfd::open(const std::string& path, int flags) {
  (void)flags;
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  bool known = path == "/dev/kfd";
  for (const auto& gpu : gpus_) known = known || path == gpu.render_node();
  if (!known) return -ENOENT;
  if (!options_.device_files_accessible) return -EACCES;
  const int fd = next_fd_++;
  open_files_[fd] = path;
  return fd;
}

int MockKfd::close(int fd) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return open_files_.erase(fd) == 1 ? 0 : -EBADF;
}

int MockKfd::ioctl(int fd, unsigned long request, void* arg) {
  std::unique_lock<std::recursive_mutex> lock(mutex_);
  auto file = open_files_.find(fd);
  if (file == open_files_.end()) return -EBADF;
  if (file->second != "/dev/kfd") return -ENOTTY;
  if (request == AMDKFD_IOC_WAIT_EVENTS) {
    // It sleeps on a condition variable, which releases one level of the recursive
    // mutex only: let go of this one so that other threads run while it sleeps.
    lock.unlock();
    return wait_events(arg);
  }
  switch (request) {
    case AMDKFD_IOC_GET_VERSION: {
      auto* args = static_cast<kfd_ioctl_get_version_args*>(arg);
      args->major_version = 1;
      args->minor_version = KFD_IOCTL_MINOR_VERSION;
      return 0;
    }
    case AMDKFD_IOC_ACQUIRE_VM: {
      auto* args = static_cast<kfd_ioctl_acquire_vm_args*>(arg);
      auto drm = open_files_.find(static_cast<int>(args->drm_fd));
      if (drm == open_files_.end() || !gpu_known(args->gpu_id)) return -EINVAL;
      vm_acquired_ = true;
      return 0;
    }
    case AMDKFD_IOC_CREATE_EVENT: return create_event(arg);
    case AMDKFD_IOC_DESTROY_EVENT: return destroy_event(arg);
    case AMDKFD_IOC_ALLOC_MEMORY_OF_GPU: return alloc_memory(arg);
    case AMDKFD_IOC_FREE_MEMORY_OF_GPU: return free_memory(arg);
    case AMDKFD_IOC_MAP_MEMORY_TO_GPU: return map_memory(arg, true);
    case AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU: return map_memory(arg, false);
    case AMDKFD_IOC_CREATE_QUEUE: return create_queue(arg);
    case AMDKFD_IOC_DESTROY_QUEUE: return destroy_queue(arg);
    default: return -ENOTTY;
  }
}

int MockKfd::alloc_memory(void* arg) {
  auto* args = static_cast<kfd_ioctl_alloc_memory_of_gpu_args*>(arg);
  if (!vm_acquired_ || !gpu_known(args->gpu_id)) return -EINVAL;
  const uint32_t type = args->flags & kMemTypes;
  if (!one_bit(type) || (type & (KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL |
                                 KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP))) {
    return -EINVAL;
  }
  if (args->size == 0 || args->size % kPage != 0 || args->va_addr % kPage != 0 ||
      args->va_addr == 0) {
    return -EINVAL;
  }
  const uint64_t start = args->va_addr, end = start + args->size;
  for (const auto& [address, a] : allocations_) {
    if (start < a.address + a.size && a.address < end) return -EINVAL;  // overlap
  }
  if (type == KFD_IOC_ALLOC_MEM_FLAGS_VRAM) {
    if (vram_used(args->gpu_id) + args->size > vram_limit(args->gpu_id)) return -ENOMEM;
    if ((args->flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC) && !options_.resizable_bar) {
      uint64_t visible = 0;
      for (const auto& [address, a] : allocations_) {
        if (a.flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC) visible += a.size;
      }
      if (visible + args->size > kSmallBarBytes) return -EINVAL;
    }
  }
  if (type == KFD_IOC_ALLOC_MEM_FLAGS_USERPTR) {
    if (args->mmap_offset != args->va_addr) return -EINVAL;
  } else {
    // Back the reservation with host memory: the mock's "VRAM" and "GTT".
    void* p = ::mmap(reinterpret_cast<void*>(start), args->size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -ENOMEM;
    args->mmap_offset = next_mmap_offset_;
    next_mmap_offset_ += args->size;
  }
  MockAllocation a;
  a.handle = next_handle_++;
  a.address = start;
  a.size = args->size;
  a.flags = args->flags;
  a.gpu_id = args->gpu_id;
  a.mmap_offset = args->mmap_offset;
  args->handle = a.handle;
  allocations_[start] = a;
  return 0;
}

int MockKfd::free_memory(void* arg) {
  auto* args = static_cast<kfd_ioctl_free_memory_of_gpu_args*>(arg);
  for (auto it = allocations_.begin(); it != allocations_.end(); ++it) {
    if (it->second.handle != args->handle) continue;
    if (it->second.gpu_mapped) return -EBUSY;  // still mapped for the GPU
    allocations_.erase(it);
    return 0;
  }
  return -EINVAL;
}

int MockKfd::map_memory(void* arg, bool map) {
  // Both ioctls share one layout.
  auto* args = static_cast<kfd_ioctl_map_memory_to_gpu_args*>(arg);
  if (args->n_devices == 0 || args->device_ids_array_ptr == 0) return -EINVAL;
  const auto* ids = reinterpret_cast<const uint32_t*>(args->device_ids_array_ptr);
  for (auto& [address, a] : allocations_) {
    if (a.handle != args->handle) continue;
    for (uint32_t i = 0; i < args->n_devices; ++i) {
      if (!gpu_known(ids[i]) || ids[i] != a.gpu_id) return -EINVAL;
    }
    if (!map && !a.gpu_mapped) return -EINVAL;
    a.gpu_mapped = map;
    args->n_success = args->n_devices;
    return 0;
  }
  return -EINVAL;
}

int MockKfd::mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset,
                  void** out) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (fd < 0) {  // anonymous: address-space reservations go to the kernel
    void* p = ::mmap(addr, length, prot, flags, fd, offset);
    if (p == MAP_FAILED) return -errno;
    *out = p;
    return 0;
  }
  auto file = open_files_.find(fd);
  if (file == open_files_.end()) return -EBADF;
  const auto off = static_cast<uint64_t>(offset);
  if (file->second == "/dev/kfd") {
    if (off != kDoorbellMmapOffset || length != kDoorbellPageBytes) return -EINVAL;
    if (doorbell_page_ == nullptr) {
      doorbell_page_ = std::aligned_alloc(kDoorbellPageBytes, kDoorbellPageBytes);
      std::memset(doorbell_page_, 0, kDoorbellPageBytes);
    }
    *out = doorbell_page_;
    return 0;
  }
  for (auto& [address, a] : allocations_) {
    if (a.mmap_offset != off || (a.flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR)) continue;
    if ((a.flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) && !(a.flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC)) {
      return -EINVAL;  // invisible VRAM cannot be mapped for the CPU
    }
    if (reinterpret_cast<uint64_t>(addr) != a.address || length != a.size ||
        !(flags & MAP_FIXED)) {
      return -EINVAL;
    }
    a.cpu_mapped = true;
    *out = addr;  // already backed by the allocation
    return 0;
  }
  return -EINVAL;
}

int MockKfd::munmap(void* addr, size_t length) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (addr != nullptr && addr == doorbell_page_) return 0;  // freed with the mock
  return ::munmap(addr, length) == 0 ? 0 : -errno;
}

const MockAllocation* MockKfd::find_gpu_mapped(uint64_t address, uint64_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = allocations_.upper_bound(address);
  if (it == allocations_.begin()) return nullptr;
  --it;
  const MockAllocation& a = it->second;
  if (!a.gpu_mapped || address < a.address || bytes > a.size ||
      address - a.address > a.size - bytes) {
    return nullptr;
  }
  return &a;
}

std::vector<MockAllocation> MockKfd::allocations() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<MockAllocation> out;
  for (const auto& [address, a] : allocations_) out.push_back(a);
  return out;
}

uint64_t MockKfd::vram_used(uint32_t gpu_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  uint64_t used = 0;
  for (const auto& [address, a] : allocations_) {
    if (a.gpu_id == gpu_id && (a.flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM)) used += a.size;
  }
  return used;
}

int MockKfd::create_queue(void* arg) {
  auto* args = static_cast<kfd_ioctl_create_queue_args*>(arg);
  if (!vm_acquired_ || !gpu_known(args->gpu_id)) return -EINVAL;
  if (args->queue_type != KFD_IOC_QUEUE_TYPE_COMPUTE &&
      args->queue_type != KFD_IOC_QUEUE_TYPE_SDMA) {
    return -EINVAL;  // AQL and XGMI SDMA queues are not modelled
  }
  const uint32_t size = args->ring_size;
  if (size < KFD_MIN_QUEUE_RING_SIZE || (size & (size - 1)) != 0) return -EINVAL;
  if (find_gpu_mapped(args->ring_base_address, size) == nullptr ||
      find_gpu_mapped(args->read_pointer_address, 8) == nullptr ||
      find_gpu_mapped(args->write_pointer_address, 8) == nullptr ||
      args->ring_base_address % 256 != 0 || args->read_pointer_address % 8 != 0 ||
      args->write_pointer_address % 8 != 0) {
    return -EINVAL;
  }
  if (args->queue_type == KFD_IOC_QUEUE_TYPE_COMPUTE) {
    if (find_gpu_mapped(args->eop_buffer_address, args->eop_buffer_size) == nullptr ||
        args->eop_buffer_size == 0) {
      return -EINVAL;
    }
    // As KFD checks since Linux 6.11 (kfd_queue.c): the sizes it computes from the
    // topology, and an allocation that also holds the debugger area.
    for (const auto& gpu : gpus_) {
      if (gpu.gpu_id != args->gpu_id) continue;
      ContextSaveSizes want;
      try {
        want = context_save_sizes(gpu);
      } catch (const Error&) {
        return -EINVAL;
      }
      if (args->ctx_save_restore_size != want.save_area ||
          args->ctl_stack_size != want.control_stack ||
          find_gpu_mapped(args->ctx_save_restore_address, want.allocation) == nullptr) {
        return -EINVAL;
      }
    }
  }
  if (queues_.size() >= kDoorbellPageBytes / 8) return -ENOSPC;
  auto queue = std::make_unique<Queue>();
  queue->type = args->queue_type;
  queue->ring.queue_id = next_queue_id_++;
  queue->ring.sdma = args->queue_type == KFD_IOC_QUEUE_TYPE_SDMA;
  queue->ring.ring = reinterpret_cast<uint32_t*>(args->ring_base_address);
  queue->ring.ring_bytes = size;
  queue->ring.read_pointer = reinterpret_cast<volatile uint64_t*>(args->read_pointer_address);
  queue->ring.write_pointer = reinterpret_cast<volatile uint64_t*>(args->write_pointer_address);
  queue->ring.doorbell_value = *queue->ring.read_pointer;
  uint32_t index = 0;
  for (bool taken = true; taken; ++index) {
    taken = false;
    for (const auto& [id, q] : queues_) taken = taken || q->doorbell_index == index;
    if (!taken) break;
  }
  queue->doorbell_index = index;
  args->queue_id = queue->ring.queue_id;
  args->doorbell_offset = kDoorbellMmapOffset + uint64_t{index} * 8;
  queues_[args->queue_id] = std::move(queue);
  return 0;
}

int MockKfd::destroy_queue(void* arg) {
  auto* args = static_cast<kfd_ioctl_destroy_queue_args*>(arg);
  return queues_.erase(args->queue_id) == 1 ? 0 : -EINVAL;
}

void MockKfd::write_doorbell(volatile uint64_t* doorbell, uint64_t value) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  PR_CHECK(doorbell_page_ != nullptr) << "doorbell written before the doorbell page was mapped";
  const auto offset = reinterpret_cast<const volatile char*>(doorbell) -
                      static_cast<const volatile char*>(doorbell_page_);
  PR_CHECK(offset >= 0 && offset < static_cast<ptrdiff_t>(kDoorbellPageBytes) && offset % 8 == 0)
      << "doorbell write outside the doorbell page, offset " << offset;
  *doorbell = value;
  for (auto& [id, queue] : queues_) {
    if (queue->doorbell_index * 8 == static_cast<uint64_t>(offset)) {
      queue->ring.doorbell_value = value;
    }
  }
  run_queues();
  event_.notify_all();
}

void MockKfd::run_queues() {
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& [id, queue] : queues_) {
      if (queue->ring.faulted) continue;
      try {
        progress = executor_->run(queue->ring) > 0 || progress;
      } catch (const MockQueueFault& fault) {
        queue->ring.faulted = true;
        faults_.push_back(MockFault{id, fault.address, fault.kind, fault.message});
      } catch (const Error& e) {  // a kernel's CPU twin refused its data
        queue->ring.faulted = true;
        faults_.push_back(MockFault{id, 0, e.kind(), str_cat("queue ", id, ": ", e.what())});
      }
    }
  }
}

int MockKfd::create_event(void* arg) {
  auto* args = static_cast<kfd_ioctl_create_event_args*>(arg);
  if (!vm_acquired_) return -EINVAL;
  Event event;
  event.type = args->event_type;
  event.auto_reset = args->auto_reset != 0;
  if (args->event_type == KFD_IOC_EVENT_MEMORY ||
      args->event_type == KFD_IOC_EVENT_HW_EXCEPTION) {
    args->event_id = next_event_id_++;
    events_[args->event_id] = event;
    return 0;
  }
  if (args->event_type != KFD_IOC_EVENT_SIGNAL || !options_.signal_events) return -EINVAL;
  if (event_page_ == 0) {
    // The page comes with the first signal event, as a handle of a GPU allocation.
    const MockAllocation* page = nullptr;
    for (const auto& [address, a] : allocations_) {
      if (a.handle == args->event_page_offset) page = &a;
    }
    if (page == nullptr || page->size < KFD_SIGNAL_EVENT_LIMIT * 8) return -EINVAL;
    event_page_ = page->address;
    std::memset(reinterpret_cast<void*>(event_page_), 0xff, KFD_SIGNAL_EVENT_LIMIT * 8);
  } else if (args->event_page_offset != 0 &&
             find_gpu_mapped(event_page_, KFD_SIGNAL_EVENT_LIMIT * 8) == nullptr) {
    return -EINVAL;  // the page was freed
  }
  uint32_t slot = 0;
  while (slot < KFD_SIGNAL_EVENT_LIMIT && events_.count(slot) != 0) ++slot;
  if (slot == KFD_SIGNAL_EVENT_LIMIT) return -ENOSPC;
  event.slot = slot;
  reinterpret_cast<volatile uint64_t*>(event_page_)[slot] = ~uint64_t{0};
  events_[slot] = event;
  args->event_id = slot;
  args->event_slot_index = slot;
  args->event_trigger_data = slot;
  return 0;
}

int MockKfd::destroy_event(void* arg) {
  auto* args = static_cast<kfd_ioctl_destroy_event_args*>(arg);
  return events_.erase(args->event_id) == 1 ? 0 : -EINVAL;
}

void MockKfd::interrupt(uint32_t context_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = events_.find(context_id);
  if (it == events_.end() || it->second.type != KFD_IOC_EVENT_SIGNAL || event_page_ == 0) return;
  auto* slot = reinterpret_cast<volatile uint64_t*>(event_page_) + it->second.slot;
  if (find_gpu_mapped(reinterpret_cast<uint64_t>(slot), 8) == nullptr) return;
  if (*slot == ~uint64_t{0}) return;  // nothing written to the mailbox: not this event
  *slot = ~uint64_t{0};              // acknowledged
  it->second.signaled = true;
  event_.notify_all();
}

int MockKfd::wait_events(void* arg) {
  auto* args = static_cast<kfd_ioctl_wait_events_args*>(arg);
  std::unique_lock<std::recursive_mutex> lock(mutex_);
  auto* events = reinterpret_cast<kfd_event_data*>(args->events_ptr);
  if (args->num_events == 0 || args->num_events > KFD_SIGNAL_EVENT_LIMIT || events == nullptr) {
    return -EINVAL;
  }
  for (uint32_t i = 0; i < args->num_events; ++i) {
    if (events_.count(events[i].event_id) == 0) return -EINVAL;  // unknown event id
  }
  auto signaled = [&] {
    for (uint32_t i = 0; i < args->num_events; ++i) {
      if (events_[events[i].event_id].signaled) return true;
    }
    return false;
  };
  ++sleeping_waiters_;
  event_.wait_for(lock, std::chrono::milliseconds(args->timeout),
                  [&] { return !faults_.empty() || signaled(); });
  --sleeping_waiters_;
  if (faults_.empty()) {
    if (!signaled()) {
      args->wait_result = KFD_IOC_WAIT_RESULT_TIMEOUT;
      return 0;
    }
    for (uint32_t i = 0; i < args->num_events; ++i) {
      Event& e = events_[events[i].event_id];
      if (e.signaled && e.auto_reset) e.signaled = false;
    }
    ++signal_wakeups_;
    args->wait_result = KFD_IOC_WAIT_RESULT_COMPLETE;
    return 0;
  }
  MockFault fault = faults_.front();
  faults_.erase(faults_.begin());
  last_fault_ = fault;
  // A memory fault fires the memory event with its address; anything else the
  // hardware-exception event, with the GPU's id.
  const uint32_t gpu_id = gpus_.empty() ? 0 : gpus_.front().gpu_id;
  for (uint32_t i = 0; i < args->num_events; ++i) {
    const uint32_t type = events_[events[i].event_id].type;
    if (fault.address != 0 && type == KFD_IOC_EVENT_MEMORY) {
      events[i].memory_exception_data.va = fault.address;
      events[i].memory_exception_data.failure.NotPresent = 1;
      events[i].memory_exception_data.gpu_id = gpu_id;
    } else if (fault.address == 0 && type == KFD_IOC_EVENT_HW_EXCEPTION) {
      events[i].hw_exception_data.reset_type = KFD_HW_EXCEPTION_PER_ENGINE_RESET;
      events[i].hw_exception_data.gpu_id = gpu_id;
    }
  }
  args->wait_result = KFD_IOC_WAIT_RESULT_COMPLETE;
  return 0;
}

uint64_t MockKfd::signal_wakeups() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return signal_wakeups_;
}

int MockKfd::sleeping_waiters() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return sleeping_waiters_;
}

std::optional<SysInterface::FaultDetail> MockKfd::fault_detail() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!last_fault_) return std::nullopt;
  return FaultDetail{last_fault_->kind, "mock KFD: " + last_fault_->message};
}

std::optional<MockFault> MockKfd::last_fault() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!faults_.empty()) return faults_.back();
  return last_fault_;
}

bool MockKfd::read_file(const std::string& path, std::string* contents) {
  return files_->read_file(path, contents);
}
std::vector<std::string> MockKfd::list_dir(const std::string& path) {
  return files_->list_dir(path);
}
bool MockKfd::exists(const std::string& path) { return files_->exists(path); }

}  // namespace petaring::amd
