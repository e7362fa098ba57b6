// MockKfd: a mock of /dev/kfd and the render nodes, over host memory, for tests. It is
// a SysInterface, so the real driver code (KfdAccess, the queues, the amd device) runs
// against it unchanged. It is not a GPU and not an emulator of one: it models what the
// kernel interface promises and executes the packets it is sent on the CPU.
//
// What it models:
//   * device files: /dev/kfd and /dev/dri/renderD<minor> of the GPUs of a sysfs tree
//     (tests/fixtures/amd/<box>/sys); sysfs reads are served from that tree.
//   * ioctls GET_VERSION, ACQUIRE_VM, ALLOC/FREE_MEMORY_OF_GPU, MAP/UNMAP_MEMORY_TO_GPU,
//     CREATE/DESTROY_QUEUE, CREATE/DESTROY_EVENT, WAIT_EVENTS; anything else is -ENOTTY.
//   * events: memory and hardware-exception events (a queue fault fires them, with the
//     fault's address or the GPU id as their data) and signal events. The first signal
//     event must bring the event page (the handle of a GPU allocation of
//     KFD_SIGNAL_EVENT_LIMIT 64-bit slots in event_page_offset; the mock does not
//     allocate one itself); each gets a slot, set to "unsignaled" (all ones). An
//     interrupt (RELEASE_MEM with INT_SEL 1 or 2, SDMA TRAP) whose context id names a
//     signal event whose slot was written fires it and resets the slot, as KFD's
//     interrupt handler does; WAIT_EVENTS wakes on it, auto-reset events clear.
//   * memory: GPU VA = CPU VA. VRAM and GTT allocations are backed by anonymous host
//     memory placed over the caller's reservation; VRAM is counted against the GPU's
//     size (-ENOMEM past it); CPU mappings of VRAM need the PUBLIC flag and, with
//     Resizable BAR off, fit in a 256 MiB BAR (-EINVAL otherwise).
//   * queues: PM4 compute and SDMA rings; writing a doorbell executes the packets between
//     the read and the new write pointer (MockExecutor, mock_executor.h), on the writer's
//     thread, then retries queues stalled on a wait. AQL queues are refused.
// What it rejects, like KFD or the GPU would: calls before ACQUIRE_VM, bad sizes and
// alignments, overlapping or unknown allocations, freeing memory still mapped, rings
// outside GPU-mapped memory, packets that touch unmapped memory or do not decode. A
// rejected packet faults its queue (it executes nothing more) and the next WAIT_EVENTS
// reports a memory fault or hardware exception; fault_detail() says what was wrong.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "device/amd/sys.h"
#include "device/amd/topology.h"
#include "runtime/error.h"

namespace petaring::amd {

class MockKfd;
struct MockDispatch;  // mock_executor.h

struct MockKfdOptions {
  std::string sysfs_root;            // the fixture tree the GPUs come from
  bool device_files_accessible = true;  // false: opening /dev/kfd gives EACCES
  bool resizable_bar = true;         // false: host-visible VRAM limited to 256 MiB
  uint64_t vram_bytes = 0;           // > 0 overrides every GPU's VRAM size
  bool signal_events = true;          // false: CREATE_EVENT of type SIGNAL gives -EINVAL
  // Runs DISPATCH_DIRECT packets (mock_kernels.h offers one that runs the CPU twins of
  // the kernels); without one, dispatches fault.
  std::function<void(MockKfd&, const MockDispatch&)> dispatch;
};

// One allocation as the mock sees it (GPU VA = CPU VA).
struct MockAllocation {
  uint64_t handle = 0;
  uint64_t address = 0;
  uint64_t size = 0;
  uint32_t flags = 0;   // KFD_IOC_ALLOC_MEM_FLAGS_*
  uint32_t gpu_id = 0;
  bool gpu_mapped = false;
  bool cpu_mapped = false;
  uint64_t mmap_offset = 0;  // render-node offset (VRAM, GTT); the address for userptr
};

// A queue fault: the first rejected packet or failed kernel of a queue.
struct MockFault {
  uint32_t queue_id = 0;
  uint64_t address = 0;  // the bad address for memory faults; 0 otherwise
  ErrorKind kind = ErrorKind::kFailedPrecondition;
  std::string message;
};

class MockExecutor;

class MockKfd : public SysInterface {
 public:
  explicit MockKfd(MockKfdOptions options);
  ~MockKfd() override;

  int open(const std::string& path, int flags) override;
  int close(int fd) override;
  int ioctl(int fd, unsigned long request, void* arg) override;
  int mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset,
           void** out) override;
  int munmap(void* addr, size_t length) override;
  void write_doorbell(volatile uint64_t* doorbell, uint64_t value) override;
  bool read_file(const std::string& path, std::string* contents) override;
  std::vector<std::string> list_dir(const std::string& path) override;
  bool exists(const std::string& path) override;
  std::optional<FaultDetail> fault_detail() override;

  // The GPUs of the sysfs tree, as discover_amd_gpus sees them through this mock.
  std::vector<AmdGpuInfo> gpus();

  // ---- For the executor and tests (thread-safe).
  // The allocation holding [address, address + bytes) mapped for the GPU, or nullptr.
  const MockAllocation* find_gpu_mapped(uint64_t address, uint64_t bytes);
  std::vector<MockAllocation> allocations();
  uint64_t vram_used(uint32_t gpu_id);
  std::optional<MockFault> last_fault();
  // An interrupt from a queue with `context_id` (called by the executor).
  void interrupt(uint32_t context_id);
  // Event statistics for tests: WAIT_EVENTS calls that returned because a signal event
  // fired, and threads inside WAIT_EVENTS now.
  uint64_t signal_wakeups();
  int sleeping_waiters();

 private:
  struct Queue;
  int alloc_memory(void* arg);
  int free_memory(void* arg);
  int map_memory(void* arg, bool map);
  int create_queue(void* arg);
  int destroy_queue(void* arg);
  int wait_events(void* arg);
  int create_event(void* arg);
  int destroy_event(void* arg);
  // Runs every queue that has work until none makes progress. Caller holds mutex_.
  void run_queues();
  bool gpu_known(uint32_t gpu_id) const;
  uint64_t vram_limit(uint32_t gpu_id) const;

  MockKfdOptions options_;
  std::vector<AmdGpuInfo> gpus_;
  std::unique_ptr<SysInterface> files_;  // the real file system, for the sysfs tree
  std::recursive_mutex mutex_;
  std::condition_variable_any event_;  // doorbells and faults
  std::map<int, std::string> open_files_;  // fd -> path
  int next_fd_ = 1000;
  bool vm_acquired_ = false;
  std::map<uint64_t, MockAllocation> allocations_;  // by address
  uint64_t next_handle_ = 1;
  uint64_t next_mmap_offset_ = 1ull << 32;
  std::map<uint32_t, std::unique_ptr<Queue>> queues_;
  uint32_t next_queue_id_ = 1;
  void* doorbell_page_ = nullptr;
  struct Event {
    uint32_t type = 0;  // KFD_IOC_EVENT_*
    bool auto_reset = false;
    bool signaled = false;
    uint32_t slot = 0;  // signal events: the slot of the event page
  };
  std::map<uint32_t, Event> events_;  // by id: signal events have their slot's index
  uint32_t next_event_id_ = 0x80000000u;  // other events, as KFD numbers them
  uint64_t event_page_ = 0;            // address of the event page; 0 until given
  uint64_t signal_wakeups_ = 0;
  int sleeping_waiters_ = 0;
  std::vector<MockFault> faults_;  // unreported; the last one stays for fault_detail()
  std::optional<MockFault> last_fault_;
  std::unique_ptr<MockExecutor> executor_;
};

}  // namespace petaring::amd
