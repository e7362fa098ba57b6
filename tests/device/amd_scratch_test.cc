// Scratch (the private segment) on the amd backend, over the mock KFD: the diagnostic
// kernel scratch_probe (kernels.cl) keeps a 1 KiB private table that the compiler places
// in scratch; the driver sizes the queue's scratch from the topology (hw_queue.h,
// scratch_layout), programs COMPUTE_TMPRING_SIZE and the scratch base, and the mock
// refuses a dispatch whose scratch is missing, too small or unmapped, then runs it.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/amd/amd_device.h"
#include "device/amd/code_object.h"
#include "device/amd/hw_queue.h"
#include "device/amd/mock/mock_devices.h"
#include "device/amd/mock/mock_kernels.h"
#include "device/amd/sys.h"
#include "device/amd/topology.h"
#include "tests/device/device_test_util.h"

namespace petaring::amd {
namespace {

using ::petaring::testing::expect_error;

std::string fixture() { return std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/7900xtx/sys"; }

class AmdScratchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (default_code_object_path().empty()) {
      GTEST_SKIP() << "the gfx1100 code objects were not built (clang-16 and ld.lld-16 missing)";
    }
  }
};

// What scratch_probe computes (kernargs.h): u32 arithmetic, wrapping.
uint32_t probe_value(uint32_t start, uint32_t i) {
  uint32_t acc = 0;
  for (uint32_t k = 0; k < 16; ++k) acc += (((start + 7 * k) & 255u) * 2654435761u) ^ i;
  return acc;
}

// Runs scratch_probe over `count` items on `device`; returns y.
std::vector<int32_t> run_probe(Device& device, const std::vector<int32_t>& x) {
  auto* amd = dynamic_cast<AmdDevice*>(&device);
  EXPECT_NE(amd, nullptr);
  const AmdKernel* probe = amd->find_gpu_kernel("scratch_probe");
  EXPECT_NE(probe, nullptr);
  auto q = device.create_queue(QueueKind::kCompute);
  const int64_t count = static_cast<int64_t>(x.size());
  auto xb = device.allocate(x.size() * 4), yb = device.allocate(x.size() * 4);
  Tensor xt(xb.get(), 0, Shape{count}, DType::kI32), yt(yb.get(), 0, Shape{count}, DType::kI32);
  q->write(xt, x.data());
  q->launch(*probe, KernelArgs{{xt, yt}, {}, {}});
  std::vector<int32_t> y(x.size());
  q->read(y.data(), yt);
  q->synchronize();
  return y;
}

TEST_F(AmdScratchTest, TheProbesDescriptorAsksForScratchAndNoOtherKernelDoes) {
  const CodeObject code = CodeObject::load_file(default_code_object_path());
  for (const KernelInfo& k : code.kernels()) {
    SCOPED_TRACE(k.name);
    if (k.name == "scratch_probe") {
      EXPECT_GE(k.private_segment_size, 1024u);  // the 256-entry u32 table
    } else {
      EXPECT_EQ(k.private_segment_size, 0u);
      EXPECT_FALSE(k.scratch_enabled);
    }
  }
}

// The 7900 XTX fixture: 96 CUs (192 SIMDs, 2 per CU), 32 scratch slots per CU, 6 shader
// engines (12 arrays, 2 per engine). For 1028 bytes per lane: waves of 64 x 1028 = 65,792
// bytes (257 units of 256), 1028 x 64 x 32 x 96 = 202,113,024 bytes for the queue, 3072
// waves over 6 engines = 512 per engine; TMPRING_SIZE = 257 << 12 | 512.
TEST_F(AmdScratchTest, LayoutFromTheTopology) {
  auto sys = make_real_sys();
  auto gpus = discover_amd_gpus(*sys, fixture());
  ASSERT_FALSE(gpus.empty());
  const ScratchLayout s = scratch_layout(gpus.front(), 1028);
  EXPECT_EQ(s.per_lane, 1028u);
  EXPECT_EQ(s.wave_bytes, 65792u);
  EXPECT_EQ(s.bytes, 202113024u);
  EXPECT_EQ(s.waves, 512u);
  EXPECT_EQ(s.tmpring_size, (257u << 12) | 512u);
  AmdGpuInfo bare = gpus.front();
  bare.max_slots_scratch_cu = 0;
  expect_error([&] { scratch_layout(bare, 1028); }, ErrorKind::kFailedPrecondition,
               {"max_slots_scratch_cu", "needs scratch"});
}

TEST_F(AmdScratchTest, TheProbeRunsOverTheMockWithItsScratch) {
  std::vector<int32_t> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int32_t>((i * 37) % 251);
  for (MockKernels kernels : {MockKernels::kCpuBackend, MockKernels::kGpuSource}) {
    auto device = std::move(open_mock_amd_devices(fixture(), {}, {}, -1, kernels).front());
    const std::vector<int32_t> y = run_probe(*device, x);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(static_cast<uint32_t>(y[i]), probe_value(static_cast<uint32_t>(x[i]), static_cast<uint32_t>(i)))
          << "item " << i;
    }
  }
}

// Too little VRAM for the queue's scratch: the launch fails naming the kernel and the sizes.
TEST_F(AmdScratchTest, ScratchThatDoesNotFitInVramIsAClearError) {
  MockKfdOptions kfd;
  kfd.vram_bytes = uint64_t{128} << 20;
  auto device = std::move(open_mock_amd_devices(fixture(), {}, kfd).front());
  std::vector<int32_t> x(16, 1);
  expect_error([&] { run_probe(*device, x); }, ErrorKind::kOutOfMemory,
               {"scratch_probe", "scratch per work-item", "202113024 bytes of VRAM"});
}

// The mock checks a scratch dispatch as a GPU would need it: with the driver's
// COMPUTE_TMPRING_SIZE or scratch base altered on the way to the mock's executor, the
// dispatch is refused naming the kernel (on a GPU the waves would fault).
TEST_F(AmdScratchTest, TheMockRefusesMissingOrUnmappedScratch) {
  struct Case {
    std::function<void(MockDispatch&)> alter;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {[](MockDispatch& d) { d.tmpring_size = 0; },
       {"scratch_probe", "scratch bytes per work-item but COMPUTE_TMPRING_SIZE is"}},
      {[](MockDispatch& d) { d.scratch_base += uint64_t{1} << 40; },
       {"scratch_probe", "scratch at", "not inside memory mapped for the GPU"}},
  };
  for (const Case& c : cases) {
    auto runner = make_mock_kernel_runner(
        std::make_shared<const CodeObject>(CodeObject::load_file(default_code_object_path())),
        MockKernels::kCpuBackend);
    MockKfdOptions kfd_options;
    kfd_options.sysfs_root = fixture();
    kfd_options.dispatch = [runner, alter = c.alter](MockKfd& kfd, const MockDispatch& d) {
      MockDispatch changed = d;
      if (changed.tmpring_size != 0) alter(changed);  // only the scratch dispatch
      runner(kfd, changed);
    };
    AmdDeviceOptions options;
    options.code_object_path = default_code_object_path();
    auto device = std::move(
        open_amd_devices(std::make_shared<MockKfd>(std::move(kfd_options)), fixture(), options, -1)
            .front());
    std::vector<int32_t> x(16, 3);
    expect_error([&] { run_probe(*device, x); }, ErrorKind::kFailedPrecondition, c.want);
  }
}

}  // namespace
}  // namespace petaring::amd
