// What is particular to the cpu backend: properties, the memory budget, the factory.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>

#include "device/cpu/cpu_device.h"
#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

std::vector<std::unique_ptr<Device>> open(int count, uint64_t memory_bytes) {
  CpuDeviceOptions options;
  options.count = count;
  options.memory_bytes = memory_bytes;
  options.threads = 1;
  return open_cpu_devices(options);
}

TEST(CpuDeviceTest, PropertiesDescribeVirtualGpus) {
  auto devices = open(3, 64ull << 20);
  ASSERT_EQ(devices.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const DeviceProperties& p = devices[i]->properties();
    EXPECT_EQ(p.name, "cpu:" + std::to_string(i));
    EXPECT_EQ(devices[i]->name(), p.name);
    EXPECT_EQ(p.kind, "cpu");
    EXPECT_EQ(p.index, i);
    EXPECT_EQ(p.memory_bytes, 64ull << 20);
    EXPECT_EQ(p.link.kind, LinkKind::kHost);
    EXPECT_EQ(p.arch, cpu_arch());
  }
#if defined(__x86_64__)
  EXPECT_EQ(cpu_arch().rfind("x86_64", 0), 0u) << cpu_arch();
  if (__builtin_cpu_supports("avx512f")) {
    EXPECT_EQ(cpu_arch(), "x86_64 avx512f");
  }
#endif
}

TEST(CpuDeviceTest, BudgetIsEnforcedAndFreeingMakesRoom) {
  auto devices = open(2, 1 << 20);
  Device& device = *devices[1];
  auto first = device.allocate(768 << 10);
  EXPECT_EQ(device.memory_used(), 768u << 10);
  EXPECT_EQ(devices[0]->memory_used(), 0u) << "budgets are per device";
  const std::string message =
      expect_error([&] { device.allocate(512 << 10); }, ErrorKind::kOutOfMemory,
                   {"cpu:1", format_bytes(512 << 10), format_bytes(256 << 10) + " free",
                    format_bytes(1 << 20) + " budget", "devices.memory", "batch_size"});
  EXPECT_EQ(device.memory_used(), 768u << 10) << "a failed allocation takes nothing";
  auto exact_fit = device.allocate(256 << 10);
  EXPECT_EQ(device.memory_used(), 1u << 20);
  expect_error([&] { device.allocate(1); }, ErrorKind::kOutOfMemory, {"cpu:1", "0 B free"});
  first.reset();
  EXPECT_EQ(device.memory_used(), 256u << 10);
  auto again = device.allocate(512 << 10);
  EXPECT_EQ(device.memory_used(), 768u << 10);
}

TEST(CpuDeviceTest, BuffersAreAlignedAndWritable) {
  auto devices = open(1, 1 << 20);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{3}, size_t{100}, size_t{4096}}) {
    auto buffer = devices[0]->allocate(bytes);
    EXPECT_EQ(buffer->size(), bytes);
    EXPECT_EQ(buffer->device_name(), "cpu:0");
    ASSERT_NE(buffer->host_data(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->host_data()) % 64, 0u) << bytes;
    std::memset(buffer->host_data(), 0xab, bytes);
  }
  EXPECT_EQ(devices[0]->memory_used(), 0u);
}

TEST(CpuDeviceTest, ConcurrentAllocationsKeepExactAccounting) {
  auto devices = open(1, 1 << 20);
  Device& device = *devices[0];
  auto worker = [&device](size_t bytes) {
    for (int i = 0; i < 2000; ++i) {
      try {
        auto buffer = device.allocate(bytes);
        EXPECT_LE(device.memory_used(), 1u << 20);
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
      }
    }
  };
  std::thread a(worker, 300 << 10), b(worker, 500 << 10), c(worker, 100 << 10);
  a.join();
  b.join();
  c.join();
  EXPECT_EQ(device.memory_used(), 0u);
}

TEST(CpuDeviceTest, FactoryRejectsBadOptions) {
  expect_error([] { open(0, 1 << 20); }, ErrorKind::kInvalidArgument, {"count", "0"});
  expect_error([] { open(1, 0); }, ErrorKind::kInvalidArgument, {"budget"});
}

TEST(CpuDeviceTest, QueuesHaveUniqueNamesAndRefuseForeignTensors) {
  auto devices = open(2, 1 << 20);
  auto compute = devices[0]->create_queue(QueueKind::kCompute);
  auto copy = devices[0]->create_queue(QueueKind::kCopy);
  auto compute2 = devices[0]->create_queue(QueueKind::kCompute);
  EXPECT_EQ(compute->name(), "cpu:0/compute");
  EXPECT_NE(copy->name(), compute->name());
  EXPECT_NE(compute2->name(), compute->name());
  EXPECT_EQ(&compute->device(), devices[0].get());
  auto foreign = devices[1]->allocate(64);
  auto local = devices[0]->allocate(64);
  Tensor src(foreign.get(), 0, {16}, DType::kF32), dst(local.get(), 0, {16}, DType::kF32);
  expect_error([&] { compute->copy(dst, src); }, ErrorKind::kInvalidArgument,
               {"cpu:0/compute", "cpu:1"});
}

TEST(CpuDeviceTest, HostDescription) {
  const HostInfo host = describe_host();
  EXPECT_GE(host.cores, 1);
  EXPECT_GT(host.memory_bytes, 0u);
  EXPECT_EQ(host.arch, cpu_arch());
  EXPECT_FALSE(host.blas.empty());
}

}  // namespace
}  // namespace petaring::testing
