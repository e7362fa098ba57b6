// The mock KFD refuses what KFD refuses, so that driver bugs surface in tests: calls
// before ACQUIRE_VM, bad sizes and alignments, overlapping allocations, freeing memory
// still mapped for the GPU, rings outside GPU memory, queue types it does not model,
// unknown ioctls and files. Raw ioctls with linux/kfd_ioctl.h's structs.
#include <fcntl.h>
#include <linux/kfd_ioctl.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>

#include "device/amd/hw_queue.h"
#include "device/amd/mock/mock_kfd.h"

namespace petaring::amd {
namespace {

class AmdMockIoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MockKfdOptions options;
    options.sysfs_root = std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/7900xtx/sys";
    kfd_ = std::make_unique<MockKfd>(options);
    gpu_ = kfd_->gpus().at(0);
    fd_ = kfd_->open("/dev/kfd", O_RDWR);
    render_ = kfd_->open(gpu_.render_node(), O_RDWR);
    ASSERT_GE(fd_, 0);
    ASSERT_GE(render_, 0);
  }
  void acquire() {
    kfd_ioctl_acquire_vm_args args{static_cast<uint32_t>(render_), gpu_.gpu_id};
    ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_ACQUIRE_VM, &args), 0);
  }
  // Reserves `bytes` of address space, as the driver does before ALLOC.
  uint64_t reserve(size_t bytes) {
    void* p = nullptr;
    EXPECT_EQ(kfd_->mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p), 0);
    return reinterpret_cast<uint64_t>(p);
  }
  int alloc(uint64_t va, uint64_t size, uint32_t flags, uint64_t* handle = nullptr) {
    kfd_ioctl_alloc_memory_of_gpu_args args{};
    args.va_addr = va;
    args.size = size;
    args.gpu_id = gpu_.gpu_id;
    args.flags = flags;
    const int rc = kfd_->ioctl(fd_, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &args);
    if (handle != nullptr) *handle = args.handle;
    return rc;
  }
  int map(uint64_t handle, bool to_gpu) {
    uint32_t ids[1] = {gpu_.gpu_id};
    kfd_ioctl_map_memory_to_gpu_args args{handle, reinterpret_cast<uint64_t>(ids), 1, 0};
    return kfd_->ioctl(fd_, to_gpu ? AMDKFD_IOC_MAP_MEMORY_TO_GPU : AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU,
                       &args);
  }

  std::unique_ptr<MockKfd> kfd_;
  AmdGpuInfo gpu_;
  int fd_ = -1, render_ = -1;
};

constexpr uint32_t kGtt = KFD_IOC_ALLOC_MEM_FLAGS_GTT | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE;

TEST_F(AmdMockIoctlTest, UnknownFilesAndIoctls) {
  EXPECT_EQ(kfd_->open("/dev/dri/renderD200", O_RDWR), -ENOENT);
  kfd_ioctl_get_version_args version{};
  EXPECT_EQ(kfd_->ioctl(render_, AMDKFD_IOC_GET_VERSION, &version), -ENOTTY);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_SET_XNACK_MODE, &version), -ENOTTY);
  EXPECT_EQ(kfd_->ioctl(12345, AMDKFD_IOC_GET_VERSION, &version), -EBADF);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_GET_VERSION, &version), 0);
  EXPECT_EQ(version.major_version, 1u);
}

TEST_F(AmdMockIoctlTest, MemoryRulesOfKfd) {
  const uint64_t va = reserve(1 << 20);
  EXPECT_EQ(alloc(va, 4096, kGtt), -EINVAL) << "allocation before ACQUIRE_VM";
  acquire();
  EXPECT_EQ(alloc(va, 100, kGtt), -EINVAL) << "size not a whole page";
  EXPECT_EQ(alloc(va + 8, 4096, kGtt), -EINVAL) << "misaligned address";
  EXPECT_EQ(alloc(va, 4096, kGtt | KFD_IOC_ALLOC_MEM_FLAGS_VRAM), -EINVAL) << "two memory types";
  uint64_t handle = 0;
  ASSERT_EQ(alloc(va, 8192, kGtt, &handle), 0);
  EXPECT_EQ(alloc(va + 4096, 4096, kGtt), -EINVAL) << "overlap";
  EXPECT_EQ(map(handle + 100, true), -EINVAL) << "unknown handle";
  EXPECT_EQ(map(handle, false), -EINVAL) << "unmapping what is not mapped";
  ASSERT_EQ(map(handle, true), 0);
  EXPECT_NE(kfd_->find_gpu_mapped(va + 4000, 100), nullptr);
  kfd_ioctl_free_memory_of_gpu_args free_args{handle};
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &free_args), -EBUSY)
      << "freeing memory still mapped for the GPU";
  ASSERT_EQ(map(handle, false), 0);
  EXPECT_EQ(kfd_->find_gpu_mapped(va, 4), nullptr);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &free_args), 0);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &free_args), -EINVAL) << "double free";
  kfd_->munmap(reinterpret_cast<void*>(va), 1 << 20);
}

TEST_F(AmdMockIoctlTest, InvisibleVramCannotBeMappedForTheCpu) {
  acquire();
  const uint64_t va = reserve(4096);
  kfd_ioctl_alloc_memory_of_gpu_args args{};
  args.va_addr = va;
  args.size = 4096;
  args.gpu_id = gpu_.gpu_id;
  args.flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE;
  ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &args), 0);
  void* p = nullptr;
  EXPECT_EQ(kfd_->mmap(reinterpret_cast<void*>(va), 4096, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_FIXED, render_, static_cast<off_t>(args.mmap_offset), &p),
            -EINVAL);
}

TEST_F(AmdMockIoctlTest, QueuesNeedRingsInGpuMemory) {
  acquire();
  const uint64_t va = reserve(4 * 4096);
  uint64_t handle = 0;
  ASSERT_EQ(alloc(va, 4 * 4096, kGtt, &handle), 0);
  kfd_ioctl_create_queue_args args{};
  args.ring_base_address = va;
  args.ring_size = 4096;
  args.read_pointer_address = va + 8192;
  args.write_pointer_address = va + 8192 + 64;
  args.gpu_id = gpu_.gpu_id;
  args.queue_type = KFD_IOC_QUEUE_TYPE_SDMA;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "memory not GPU-mapped";
  ASSERT_EQ(map(handle, true), 0);
  args.ring_size = 3000;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "ring not a power of 2";
  args.ring_size = 4096;
  args.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE_AQL;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "AQL is not modelled";
  args.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "compute needs EOP";
  args.queue_type = KFD_IOC_QUEUE_TYPE_SDMA;
  ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), 0);
  kfd_ioctl_destroy_queue_args destroy{args.queue_id, 0};
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_DESTROY_QUEUE, &destroy), 0);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_DESTROY_QUEUE, &destroy), -EINVAL);
  ASSERT_EQ(map(handle, false), 0);
}

// A compute queue's context-save area must have the sizes KFD computes from the
// topology (context_save_sizes), in an allocation that also holds the debugger area.
TEST_F(AmdMockIoctlTest, ComputeQueuesNeedTheContextSaveSizesKfdComputes) {
  acquire();
  const ContextSaveSizes sizes = context_save_sizes(gpu_);
  const uint64_t va = reserve(4 * 4096), eop_va = reserve(4096), save_va = reserve(sizes.allocation);
  uint64_t handle = 0, eop = 0, save = 0;
  ASSERT_EQ(alloc(va, 4 * 4096, kGtt, &handle), 0);
  ASSERT_EQ(alloc(eop_va, 4096, kGtt, &eop), 0);
  ASSERT_EQ(alloc(save_va, sizes.allocation, kGtt, &save), 0);
  for (uint64_t h : {handle, eop, save}) ASSERT_EQ(map(h, true), 0);
  kfd_ioctl_create_queue_args args{};
  args.ring_base_address = va;
  args.ring_size = 4096;
  args.read_pointer_address = va + 8192;
  args.write_pointer_address = va + 8192 + 64;
  args.gpu_id = gpu_.gpu_id;
  args.queue_type = KFD_IOC_QUEUE_TYPE_COMPUTE;
  args.eop_buffer_address = eop_va;
  args.eop_buffer_size = 4096;
  args.ctx_save_restore_address = save_va;
  args.ctx_save_restore_size = sizes.save_area;
  args.ctl_stack_size = 0x10000;  // a guess, not KFD's number
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "control stack size";
  args.ctl_stack_size = sizes.control_stack;
  args.ctx_save_restore_size = 1 << 20;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "save area size";
  args.ctx_save_restore_size = sizes.save_area;
  args.ctx_save_restore_address = save_va + 4096;  // runs past the allocation
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), -EINVAL) << "debugger area";
  args.ctx_save_restore_address = save_va;
  ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_QUEUE, &args), 0);
  kfd_ioctl_destroy_queue_args destroy{args.queue_id, 0};
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_DESTROY_QUEUE, &destroy), 0);
}

// The RX 7900 XTX fixture (96 CUs of 2 SIMDs, 16 waves each): the numbers other KFD
// users hard-code for this card (save area + debugger area = 0x2c02000, control stack
// 0xa000) come out of the formula.
TEST(AmdContextSaveSizes, SevenNineHundredXtxAndMissingTopology) {
  AmdGpuInfo gpu;
  gpu.arch = "gfx1100";
  gpu.gfx_target_version = 110000;
  gpu.simd_count = 192;
  gpu.simd_per_cu = 2;
  gpu.max_waves_per_simd = 16;
  const ContextSaveSizes s = context_save_sizes(gpu);
  EXPECT_EQ(s.control_stack, 0xa000u);
  EXPECT_EQ(s.save_area, 0x2bea000u);
  EXPECT_EQ(s.debugger_area, 0x18000u);
  EXPECT_EQ(s.allocation, 0x2c02000u);
  gpu.gfx_target_version = 110002;  // gfx1102: 256 KiB of VGPRs per CU
  EXPECT_EQ(context_save_sizes(gpu).save_area, 0xa000u + 96u * 0x55000u);
  gpu.simd_per_cu = 0;
  try {
    context_save_sizes(gpu);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find("simd_per_cu 0"), std::string::npos) << e.what();
  }
}

TEST_F(AmdMockIoctlTest, SignalEventsNeedTheEventPageAndWaitsKnownEvents) {
  kfd_ioctl_create_event_args event{};
  event.event_type = KFD_IOC_EVENT_SIGNAL;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_EVENT, &event), -EINVAL);  // before ACQUIRE_VM
  acquire();
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_EVENT, &event), -EINVAL);  // no event page
  const uint64_t small_va = reserve(4096);
  uint64_t small = 0;
  ASSERT_EQ(alloc(small_va, 4096, KFD_IOC_ALLOC_MEM_FLAGS_GTT, &small), 0);
  event.event_page_offset = small;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_EVENT, &event), -EINVAL);  // page too small
  const uint64_t bytes = KFD_SIGNAL_EVENT_LIMIT * 8;
  const uint64_t page_va = reserve(bytes);
  uint64_t page = 0;
  ASSERT_EQ(alloc(page_va, bytes, KFD_IOC_ALLOC_MEM_FLAGS_GTT, &page), 0);
  ASSERT_EQ(map(page, true), 0);
  event.event_page_offset = page;
  ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_CREATE_EVENT, &event), 0);
  EXPECT_EQ(event.event_slot_index, event.event_id);

  kfd_event_data data[1]{};
  data[0].event_id = 12345;  // never created
  kfd_ioctl_wait_events_args wait{};
  wait.events_ptr = reinterpret_cast<uint64_t>(data);
  wait.num_events = 1;
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_WAIT_EVENTS, &wait), -EINVAL);
  data[0].event_id = event.event_id;
  wait.timeout = 0;
  ASSERT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_WAIT_EVENTS, &wait), 0);
  EXPECT_EQ(wait.wait_result, uint32_t{KFD_IOC_WAIT_RESULT_TIMEOUT});  // nothing fired it
  kfd_ioctl_destroy_event_args destroy{event.event_id, 0};
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_DESTROY_EVENT, &destroy), 0);
  EXPECT_EQ(kfd_->ioctl(fd_, AMDKFD_IOC_DESTROY_EVENT, &destroy), -EINVAL);
}

}  // namespace
}  // namespace petaring::amd
