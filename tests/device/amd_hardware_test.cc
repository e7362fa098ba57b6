// The amd backend on a real AMD GPU: allocation, SDMA copy bandwidth, dispatch latency.
// (The conformance cases run on hardware too, as the "amd_hardware" backend of
// device_test_util.h.) Everything here skips, printing why, unless this host has a
// readable /dev/kfd and a gfx11 GPU. Figures are printed, never asserted.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "device/amd/amd_device.h"
#include "device/amd/kfd_access.h"
#include "tests/device/device_test_util.h"

namespace petaring::amd {
namespace {

class AmdHardwareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = ::petaring::testing::amd_hardware_skip_reason();
    if (!reason.empty()) GTEST_SKIP() << "amd hardware suite skipped: " << reason;
    device_ = std::move(open_amd_devices(make_real_sys(), kSysfsRoot).front());
    queue_ = device_->create_queue(QueueKind::kCompute);
  }
  void TearDown() override {
    queue_.reset();
    device_.reset();
  }
  std::unique_ptr<Device> device_;
  std::unique_ptr<Queue> queue_;
};

TEST_F(AmdHardwareTest, AllocatesVramUpToAGibibyte) {
  for (size_t bytes : {size_t{4096}, size_t{1} << 20, size_t{256} << 20, size_t{1} << 30}) {
    auto buffer = device_->allocate(bytes);
    EXPECT_GE(device_->memory_used(), bytes);
    EXPECT_NE(buffer->host_data(), nullptr);
  }
  EXPECT_EQ(device_->memory_used(), 0u);
}

TEST_F(AmdHardwareTest, CopyBandwidthAndDispatchLatency) {
  const size_t bytes = 256 << 20;
  auto a = device_->allocate(bytes), b = device_->allocate(bytes);
  Tensor ta(a.get(), 0, Shape{static_cast<int64_t>(bytes / 4)}, DType::kF32);
  Tensor tb(b.get(), 0, Shape{static_cast<int64_t>(bytes / 4)}, DType::kF32);
  kernels::fill(*queue_, ta, 1.5f);
  queue_->copy(tb, ta);
  queue_->synchronize();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) queue_->copy(tb, ta);
  queue_->synchronize();
  const double copy_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("amd hardware: SDMA VRAM->VRAM copy %.1f GB/s\n", 5.0 * bytes / copy_s / 1e9);
  Tensor one = ta.slice(0, {1});
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) kernels::scale(*queue_, one, 1.0f);
  queue_->synchronize();
  const double launch_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("amd hardware: dispatch + wait %.1f us\n", launch_s / 100 * 1e6);
  float check = 0;
  queue_->read(&check, tb.slice(bytes / 4 - 1, {1}));
  queue_->synchronize();
  EXPECT_EQ(check, 1.5f);
}

// The queue's scratch set-up on a GPU: scratch_probe keeps a private table in scratch
// (amd_scratch_test.cc checks the same over the mock KFD).
TEST_F(AmdHardwareTest, ScratchProbeRunsWithTheQueuesScratch) {
  auto* amd = dynamic_cast<AmdDevice*>(device_.get());
  ASSERT_NE(amd, nullptr);
  const AmdKernel* probe = amd->find_gpu_kernel("scratch_probe");
  ASSERT_NE(probe, nullptr);
  constexpr int64_t kCount = 4096;
  std::vector<int32_t> x(kCount), y(kCount);
  for (int64_t i = 0; i < kCount; ++i) x[i] = static_cast<int32_t>((i * 37) % 251);
  auto xb = device_->allocate(kCount * 4), yb = device_->allocate(kCount * 4);
  Tensor xt(xb.get(), 0, Shape{kCount}, DType::kI32), yt(yb.get(), 0, Shape{kCount}, DType::kI32);
  queue_->write(xt, x.data());
  queue_->launch(*probe, KernelArgs{{xt, yt}, {}, {}});
  queue_->read(y.data(), yt);
  queue_->synchronize();
  for (int64_t i = 0; i < kCount; ++i) {
    uint32_t want = 0;
    for (uint32_t k = 0; k < 16; ++k) {
      want += (((static_cast<uint32_t>(x[i]) + 7 * k) & 255u) * 2654435761u) ^ static_cast<uint32_t>(i);
    }
    ASSERT_EQ(static_cast<uint32_t>(y[i]), want) << "item " << i;
  }
}

}  // namespace
}  // namespace petaring::amd
