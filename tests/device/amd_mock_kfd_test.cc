// The KFD path (KfdAccess, HwQueue, Signal) against the mock KFD: allocation errors that
// explain themselves, SDMA copies and fences, PM4 releases and waits across queues, ring
// wrap-around, signal rollover, faults and timeouts that name the queue's state.
#include <gtest/gtest.h>

#include <cstring>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "device/amd/hw_queue.h"
#include "device/amd/kfd_access.h"
#include "device/amd/mock/mock_kfd.h"
#include "device/amd/pm4.h"
#include "device/amd/sdma.h"
#include "tests/device/device_test_util.h"

namespace petaring::amd {
namespace {

using namespace std::chrono_literals;
using ::petaring::testing::expect_error;

std::string fixture(const std::string& box) {
  return std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/" + box + "/sys";
}

struct Opened {
  std::shared_ptr<MockKfd> kfd;
  std::unique_ptr<KfdAccess> access;
};

Opened open_mock(MockKfdOptions options = {}) {
  if (options.sysfs_root.empty()) options.sysfs_root = fixture("7900xtx");
  Opened o;
  o.kfd = std::make_shared<MockKfd>(options);
  o.access = std::make_unique<KfdAccess>(o.kfd, o.kfd->gpus().at(0));
  return o;
}

TEST(AmdMockKfdTest, OpensTheGpuThroughTheKfdPath) {
  Opened o = open_mock();
  EXPECT_NE(o.access->describe().find("KFD 1."), std::string::npos) << o.access->describe();
  EXPECT_NE(o.access->describe().find("/dev/dri/renderD128"), std::string::npos);
  EXPECT_EQ(o.access->gpu().arch, "gfx1100");
}

TEST(AmdMockKfdTest, PermissionErrorSaysWhichGroups) {
  MockKfdOptions options;
  options.device_files_accessible = false;
  expect_error([&] { open_mock(options); }, ErrorKind::kPermissionDenied,
               {"/dev/kfd", "EACCES", "render", "video"});
}

TEST(AmdMockKfdTest, AllocationsMapAtTheSameAddressAndFreeCleanly) {
  Opened o = open_mock();
  GpuAllocation vram = o.access->allocate(10000, MemoryKind::kVram, true);
  GpuAllocation gtt = o.access->allocate(4096, MemoryKind::kGtt, true);
  EXPECT_EQ(vram.size, 12288u);
  std::memset(vram.address, 7, vram.size);  // host-visible: the CPU may write it
  EXPECT_EQ(o.kfd->vram_used(o.access->gpu().gpu_id), 12288u);
  EXPECT_NE(o.kfd->find_gpu_mapped(vram.gpu_address() + 100, 8), nullptr);
  EXPECT_EQ(o.kfd->find_gpu_mapped(vram.gpu_address() + vram.size - 4, 8), nullptr);
  std::vector<char> host(8192, 1);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(host.data()) + 4095) & ~uintptr_t{4095});
  GpuAllocation user = o.access->register_host_memory(aligned, 4096);
  EXPECT_EQ(user.address, aligned);
  EXPECT_EQ(o.kfd->allocations().size(), 3u);
  o.access->free(user);
  o.access->free(gtt);
  o.access->free(vram);
  EXPECT_TRUE(o.kfd->allocations().empty());
  EXPECT_EQ(o.kfd->vram_used(o.access->gpu().gpu_id), 0u);
  expect_error([&] { o.access->register_host_memory(host.data() + 1, 4096); },
               ErrorKind::kInvalidArgument, {"page aligned"});
}

TEST(AmdMockKfdTest, OutOfVramAndResizableBarErrorsExplainTheCause) {
  MockKfdOptions options;
  options.vram_bytes = 64ull << 20;
  options.resizable_bar = false;
  Opened o = open_mock(options);
  expect_error([&] { o.access->allocate(128ull << 20, MemoryKind::kVram, false); },
               ErrorKind::kOutOfMemory, {"out of VRAM", "128 MiB", "ENOMEM"});
  GpuAllocation small = o.access->allocate(32ull << 20, MemoryKind::kVram, true);
  options.vram_bytes = 1ull << 30;
  Opened big = open_mock(options);
  expect_error([&] { big.access->allocate(512ull << 20, MemoryKind::kVram, true); },
               ErrorKind::kFailedPrecondition, {"Resizable BAR", "EINVAL"});
  // Invisible VRAM does not go through the BAR.
  GpuAllocation invisible = big.access->allocate(512ull << 20, MemoryKind::kVram, false);
  EXPECT_FALSE(invisible.host_visible);
  big.access->free(invisible);
  o.access->free(small);
}

// Copies through SDMA and fences a signal; returns the signal's final value.
void sdma_copy(HwQueue& q, Signal& signal, uint64_t dst, uint64_t src, uint64_t bytes,
               uint32_t value) {
  sdma::Writer w;
  w.copy(dst, src, bytes).timestamp(signal.timestamp_address()).fence(signal.value_address(), value);
  q.write(w.dwords(), "copy + fence");
  q.submit();
}

TEST(AmdMockKfdTest, SdmaCopiesAndFences) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kSdma, 4096, "amd:0/copy");
  Signal signal(*o.access);
  GpuAllocation a = o.access->allocate(3 << 20, MemoryKind::kVram, true);
  GpuAllocation b = o.access->allocate(3 << 20, MemoryKind::kVram, true);
  auto* src = static_cast<uint8_t*>(a.address);
  for (size_t i = 0; i < a.size; ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  sdma_copy(q, signal, b.gpu_address(), a.gpu_address(), a.size, 1);
  signal.wait(1, 1000ms, "test", [&] { return q.state(); });
  EXPECT_EQ(std::memcmp(a.address, b.address, a.size), 0);
  EXPECT_GT(signal.timestamp(), 0u);
  EXPECT_EQ(q.read_pointer(), q.write_pointer());
  o.access->free(a);
  o.access->free(b);
}

TEST(AmdMockKfdTest, ComputeQueueWaitsForTheCopyQueue) {
  Opened o = open_mock();
  HwQueue compute(*o.access, HardwareQueueKind::kComputePm4, 4096, "amd:0/compute");
  HwQueue copy(*o.access, HardwareQueueKind::kSdma, 4096, "amd:0/copy");
  Signal copied(*o.access), done(*o.access);
  GpuAllocation a = o.access->allocate(4096, MemoryKind::kGtt, true);
  pm4::Writer w;
  w.wait_reg_mem(copied.value_address(), 5).release_mem(done.value_address(), 9);
  compute.write(w.dwords(), "wait for copy, release");
  compute.submit();
  EXPECT_EQ(done.value(), 0u);  // stalled on the wait
  EXPECT_LT(compute.read_pointer(), compute.write_pointer());
  sdma_copy(copy, copied, a.gpu_address() + 2048, a.gpu_address(), 1024, 5);
  done.wait(9, 1000ms, "test", [&] { return compute.state(); });
  EXPECT_EQ(compute.read_pointer(), compute.write_pointer());
  o.access->free(a);
}

TEST(AmdMockKfdTest, RingWrapsAroundWithPadding) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kComputePm4, 1024, "amd:0/compute");
  Signal signal(*o.access);
  pm4::Writer w;
  for (uint32_t i = 1; i <= 200; ++i) {
    w.clear();
    w.nop(static_cast<uint32_t>(i % 5 + 1)).release_mem(signal.value_address(), i);
    q.write(w.dwords(), "nop + release");
    q.submit();
    signal.wait(i, 1000ms, "test", [&] { return q.state(); });
  }
  EXPECT_GT(q.write_pointer(), 8 * q.ring_bytes());  // went around the ring 8 times
  EXPECT_GT(q.pads(), 0u);
  EXPECT_EQ(signal.value(), 200u);
}

TEST(AmdMockKfdTest, SignalTimelineRollsOver) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kSdma, 1024, "amd:0/copy");
  Signal signal(*o.access);
  uint32_t value = 0xfffffff0u;
  signal.reset(value);
  GpuAllocation a = o.access->allocate(4096, MemoryKind::kGtt, true);
  for (int i = 0; i < 40; ++i) {
    ++value;
    sdma_copy(q, signal, a.gpu_address() + 64, a.gpu_address(), 64, value);
    signal.wait(value, 1000ms, "test", [&] { return q.state(); });
  }
  EXPECT_EQ(signal.value(), 0xfffffff0u + 40u);  // wrapped to 24
  EXPECT_TRUE(Signal::reached(5, 0xfffffff0u));
  EXPECT_FALSE(Signal::reached(0xfffffff0u, 5));
  o.access->free(a);
}

// A compute queue stalled on a copy the host has not submitted yet; returns its signal
// value target. The waiter thread's wait() must sleep in WAIT_EVENTS (the poll ends
// first), and wakes when the copy unblocks the queue.
void wait_across_a_stall(Opened& o, Signal& done, std::vector<uint32_t> notify) {
  HwQueue compute(*o.access, HardwareQueueKind::kComputePm4, 4096, "amd:0/compute");
  HwQueue copy(*o.access, HardwareQueueKind::kSdma, 4096, "amd:0/copy");
  Signal copied(*o.access);
  GpuAllocation a = o.access->allocate(4096, MemoryKind::kGtt, true);
  pm4::Writer w;
  w.wait_reg_mem(copied.value_address(), 5).release_mem(done.value_address(), 9);
  std::vector<uint32_t> dwords = w.dwords();
  dwords.insert(dwords.end(), notify.begin(), notify.end());
  compute.write(dwords, "wait for copy, release, notify");
  compute.submit();
  std::exception_ptr failed;
  std::thread waiter([&] {
    try {
      done.wait(9, 20s, "waiter", [&] { return compute.state(); });
    } catch (...) {
      failed = std::current_exception();
    }
  });
  while (o.kfd->sleeping_waiters() == 0) std::this_thread::yield();  // asleep in WAIT_EVENTS
  EXPECT_EQ(done.value(), 0u);
  sdma_copy(copy, copied, a.gpu_address() + 2048, a.gpu_address(), 1024, 5);
  waiter.join();
  if (failed) std::rethrow_exception(failed);
  EXPECT_EQ(done.value(), 9u);
  o.access->free(a);
}

TEST(AmdMockKfdTest, SignalWaitSleepsOnItsEventUntilTheInterrupt) {
  Opened o = open_mock();
  Signal done(*o.access), other(*o.access);
  ASSERT_TRUE(done.event().valid());
  ASSERT_TRUE(other.event().valid());
  EXPECT_NE(done.event().id, other.event().id);
  EXPECT_EQ(other.event().mailbox, done.event().mailbox + 8 * (other.event().id - done.event().id));
  auto* mailbox = reinterpret_cast<volatile uint64_t*>(done.event().mailbox);
  EXPECT_EQ(*mailbox, ~uint64_t{0});  // KFD's "unsignaled"
  // RELEASE_MEM of the event id into the mailbox with an interrupt whose context is the id.
  const auto notify = pm4::decode_stream(done.pm4_notify());
  ASSERT_EQ(notify.size(), 1u);
  const auto& release = std::get<pm4::ReleaseMem>(notify[0].packet);
  EXPECT_EQ(release.address, done.event().mailbox);
  EXPECT_EQ(release.data, done.event().id);
  EXPECT_EQ(release.int_sel, pm4::IntSel::kInterruptAfterWriteConfirm);
  EXPECT_EQ(release.int_ctxid, done.event().id);
  EXPECT_EQ(sdma::decode_stream(done.sdma_notify()).size(), 2u);  // FENCE, TRAP

  wait_across_a_stall(o, done, done.pm4_notify());
  EXPECT_EQ(o.kfd->signal_wakeups(), 1u);  // woken by the event, once
  EXPECT_EQ(*mailbox, ~uint64_t{0});       // the interrupt acknowledged the slot
}

TEST(AmdMockKfdTest, WithoutSignalEventsWaitsSleepInSlicesAndStillFinish) {
  MockKfdOptions options;
  options.signal_events = false;  // a KFD that refuses them
  Opened o = open_mock(options);
  Signal done(*o.access);
  EXPECT_FALSE(done.event().valid());
  EXPECT_TRUE(done.pm4_notify().empty());
  EXPECT_TRUE(done.sdma_notify().empty());
  wait_across_a_stall(o, done, done.pm4_notify());
  EXPECT_EQ(o.kfd->signal_wakeups(), 0u);
}

// An interrupt whose mailbox was not written does not fire the event (KFD checks the
// slot), so a signal write without its notify packets cannot wake a waiter early.
TEST(AmdMockKfdTest, InterruptWithoutAMailboxWriteFiresNothing) {
  Opened o = open_mock();
  Signal done(*o.access);
  o.kfd->interrupt(done.event().id);
  HwQueue q(*o.access, HardwareQueueKind::kComputePm4, 4096, "amd:0/compute");
  pm4::Writer w;
  w.release_mem(done.value_address(), 1, pm4::IntSel::kInterrupt, done.event().id);
  q.write(w.dwords(), "release with an interrupt, no mailbox");
  q.submit();
  EXPECT_EQ(done.value(), 1u);
  EXPECT_EQ(o.kfd->signal_wakeups(), 0u);
  EXPECT_EQ(*reinterpret_cast<volatile uint64_t*>(done.event().mailbox), ~uint64_t{0});
  done.wait(1, 1000ms, "test", [&] { return q.state(); });  // reached: no sleep needed
  EXPECT_EQ(o.kfd->signal_wakeups(), 0u);
}

TEST(AmdMockKfdTest, TimeoutNamesTheQueueState) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kComputePm4, 4096, "amd:0/compute");
  Signal never(*o.access), done(*o.access);
  pm4::Writer w;
  w.wait_reg_mem(never.value_address(), 1).release_mem(done.value_address(), 1);
  q.write(w.dwords(), "WAIT_REG_MEM on a signal nobody writes");
  q.submit();
  expect_error([&] { done.wait(1, 20ms, "amd:0/compute", [&] { return q.state(); }); },
               ErrorKind::kTimeout, {"amd:0/compute", "rptr 0", "wptr", "nobody writes"});
}

TEST(AmdMockKfdTest, UnmappedAddressFaultsTheQueue) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kSdma, 4096, "amd:0/copy");
  Signal signal(*o.access);
  GpuAllocation a = o.access->allocate(4096, MemoryKind::kGtt, true);
  sdma_copy(q, signal, a.gpu_address(), 0x10000000ull, 256, 1);  // source never allocated
  expect_error([&] { signal.wait(1, 1000ms, "test", [&] { return q.state(); }); },
               ErrorKind::kFailedPrecondition,
               {"GPU memory fault at 0x10000000", "COPY_LINEAR source", "mock KFD"});
  EXPECT_EQ(signal.value(), 0u);
  o.access->free(a);
}

TEST(AmdMockKfdTest, UnknownPacketIsRejectedClearly) {
  Opened o = open_mock();
  HwQueue q(*o.access, HardwareQueueKind::kComputePm4, 4096, "amd:0/compute");
  Signal signal(*o.access);
  const uint32_t bogus[] = {3u << 30 | 0u << 16 | 0x99u << 8, 0};
  q.write(bogus, "a packet of opcode 0x99");
  q.submit();
  expect_error([&] { signal.wait(1, 1000ms, "test", [&] { return q.state(); }); },
               ErrorKind::kInvalidArgument, {"PM4", "mock KFD"});
}

}  // namespace
}  // namespace petaring::amd
