// The amd backend over the mock KFD, beyond the conformance suite: what the device says
// it is, dispatches that really go through the code object in GPU memory, ring
// wrap-around and signal rollover under real work, chunked staging copies, errors.
#include <gtest/gtest.h>

#include <cstring>

#include "device/amd/amd_device.h"
#include "device/amd/launch_plan.h"
#include "device/amd/mock/mock_devices.h"
#include "tests/device/device_test_util.h"

namespace petaring::amd {
namespace {

using ::petaring::testing::expect_error;

std::string fixture(const std::string& box) {
  return std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/" + box + "/sys";
}

class AmdDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (default_code_object_path().empty()) {
      GTEST_SKIP() << "the gfx1100 code objects were not built (clang-16 and ld.lld-16 missing)";
    }
  }
  std::unique_ptr<Device> open(AmdDeviceOptions options = {}, MockKfdOptions kfd = {}) {
    return std::move(open_mock_amd_devices(fixture("7900xtx"), options, kfd).front());
  }
  std::vector<float> fill_and_read(Device& device, Queue& q, size_t count, float value) {
    auto buffer = device.allocate(count * 4);
    Tensor t(buffer.get(), 0, Shape{static_cast<int64_t>(count)}, DType::kF32);
    kernels::fill(q, t, value);
    std::vector<float> out(count);
    q.read(out.data(), t);
    q.synchronize();
    return out;
  }
};

TEST_F(AmdDeviceTest, DescribesTheGpu) {
  auto device = open();
  const DeviceProperties& p = device->properties();
  EXPECT_EQ(p.name, "amd:0");
  EXPECT_EQ(p.kind, "amd");
  EXPECT_EQ(p.arch, "gfx1100");
  EXPECT_EQ(p.memory_bytes, 25753026560ull);
  EXPECT_EQ(p.link.to_string(), "PCIe 4.0 x16 (31.5 GB/s)");
  EXPECT_EQ(device->kernel_names().size(), 30u);  // the table (helpers are not listed)
  auto buffer = device->allocate(1000);
  EXPECT_EQ(buffer->size(), 1000u);
  EXPECT_EQ(buffer->device_name(), "amd:0");
  EXPECT_EQ(device->memory_used(), 4096u);  // whole pages
  buffer.reset();
  EXPECT_EQ(device->memory_used(), 0u);
}

TEST_F(AmdDeviceTest, DispatchRunsTheKernelWhoseCodeIsInGpuMemory) {
  auto device = open();
  auto q = device->create_queue(QueueKind::kCompute);
  EXPECT_EQ(fill_and_read(*device, *q, 1000, 2.5f), std::vector<float>(1000, 2.5f));
  // Overwrite the descriptor of "fill" in GPU memory: the GPU (and the mock) no longer
  // finds that kernel there, so the dispatch faults instead of running something.
  auto* kernel = dynamic_cast<const AmdKernel*>(device->find_kernel("fill"));
  ASSERT_NE(kernel, nullptr);
  auto* descriptor = reinterpret_cast<uint8_t*>(kernel->descriptor_address());
  uint8_t saved[64];
  std::memcpy(saved, descriptor, 64);
  std::memset(descriptor, 0xee, 64);
  expect_error([&] { fill_and_read(*device, *q, 16, 1.0f); }, ErrorKind::kFailedPrecondition,
               {"amd:0/compute", "DISPATCH_DIRECT", "no kernel", "mock KFD"});
  std::memcpy(descriptor, saved, 64);
  // The queue's rings were recreated: work runs again.
  EXPECT_EQ(fill_and_read(*device, *q, 16, 3.0f), std::vector<float>(16, 3.0f));
}

TEST_F(AmdDeviceTest, SmallRingsWrapAndTheTimelineRollsOver) {
  AmdDeviceOptions options;
  options.ring_bytes = 1024;
  options.first_signal_value = 0xffffffe0u;
  options.staging_bytes = 4096;  // writes and reads go in many chunks
  auto device = open(options);
  auto q = device->create_queue(QueueKind::kCompute);
  auto buffer = device->allocate(64 * 1024 * 4);
  Tensor t(buffer.get(), 0, Shape{64 * 1024}, DType::kF32);
  std::vector<float> host = ::petaring::testing::random_values(64 * 1024, 5);
  q->write(t, host.data());
  for (int i = 0; i < 40; ++i) kernels::scale(*q, t, i % 2 == 0 ? 2.0f : 0.5f);
  std::vector<float> out(host.size());
  q->read(out.data(), t);
  q->synchronize();
  EXPECT_EQ(out, host);  // 20 doublings and 20 halvings are exact
}

// attention_backward_kv (and its bf16 twin) is the second dispatch of attention_backward,
// not a kernel of the table; a kernel the amd backend has no plan for (one added to the
// table later) is refused with its name, not run; a dtype a kernel does not take, too.
TEST_F(AmdDeviceTest, HelperKernelsAreHiddenAndUnknownKernelsAreRefusedByName) {
  auto device = open();
  auto* amd = dynamic_cast<AmdDevice*>(device.get());
  ASSERT_NE(amd, nullptr);
  EXPECT_EQ(device->find_kernel("attention_backward_kv"), nullptr);
  EXPECT_NE(amd->find_gpu_kernel("attention_backward_kv"), nullptr);
  EXPECT_NE(device->find_kernel("attention_backward"), nullptr);
  EXPECT_EQ(device->find_kernel("attention_backward_kv_bf16"), nullptr);
  EXPECT_NE(amd->find_gpu_kernel("attention_backward_kv_bf16"), nullptr);
  EXPECT_NE(device->find_kernel("gemm_bf16"), nullptr);
  EXPECT_EQ(device->find_kernel("gemm_f16"), nullptr);
  auto buffer = device->allocate(64);
  Tensor x(buffer.get(), 0, Shape{16}, DType::kF32);
  auto address = [](const Tensor& t) { return reinterpret_cast<uint64_t>(t.buffer->host_data()); };
  expect_error([&] { plan_launch("gemm_f16", KernelArgs{{x}, {}, {}}, address); },
               ErrorKind::kUnimplemented, {"'gemm_f16'"});
  expect_error([&] { plan_launch("gelu_bf16", KernelArgs{{x, x}, {}, {}}, address); },
               ErrorKind::kUnimplemented, {"gelu_bf16", "X", "f32", "bf16"});
  Tensor half(buffer.get(), 0, Shape{16}, DType::kBF16);
  expect_error([&] { plan_launch("gelu", KernelArgs{{half, x}, {}, {}}, address); },
               ErrorKind::kUnimplemented, {"gelu", "bf16", "f32"});
}

TEST_F(AmdDeviceTest, OutOfVramNamesTheDevice) {
  MockKfdOptions kfd;
  kfd.vram_bytes = 64ull << 20;
  auto device = open({}, kfd);
  expect_error([&] { device->allocate(128ull << 20); }, ErrorKind::kOutOfMemory,
               {"amd:0", "out of memory", "128 MiB", "out of VRAM"});
}

TEST_F(AmdDeviceTest, SixGpuBoxOpensOneGpuPerRankAndRefusesTheUnbuiltArch) {
  auto third = open_mock_amd_devices(fixture("six_gpu"), {}, {}, 3);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(third[0]->name(), "amd:3");
  EXPECT_EQ(third[0]->properties().link.to_string(), "PCIe 3.0 x4 (3.9 GB/s)");
  expect_error([&] { open_mock_amd_devices(fixture("six_gpu"), {}, {}, 5); },
               ErrorKind::kUnimplemented, {"gfx1201", "gfx1100"});
  expect_error([&] { open_mock_amd_devices(fixture("six_gpu"), {}, {}, 6); },
               ErrorKind::kNotFound, {"GPU 6", "lists 6"});
}

}  // namespace
}  // namespace petaring::amd
