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

// Ranks run as threads drive one device each: GEMMs on several queues at once must not
// disturb each other inside the GEMM library.
TEST(CpuDeviceTest, ConcurrentGemmsOnSeveralDevicesAgree) {
  CpuDeviceOptions options;
  options.count = 3;
  options.memory_bytes = 4 << 20;
  options.threads = 2;
  auto devices = open_cpu_devices(options);
  const int64_t n = 96;
  const std::vector<float> a_host = random_values(n * n, 71), b_host = random_values(n * n, 72);
  struct PerDevice {
    std::unique_ptr<Queue> queue;
    std::unique_ptr<Buffer> a, b, c;
    std::vector<std::vector<float>> results;
  };
  std::vector<PerDevice> per(devices.size());
  for (size_t d = 0; d < devices.size(); ++d) {
    PerDevice& p = per[d];
    p.queue = devices[d]->create_queue(QueueKind::kCompute);
    p.a = devices[d]->allocate(n * n * 4);
    p.b = devices[d]->allocate(n * n * 4);
    p.c = devices[d]->allocate(n * n * 4);
    Tensor a(p.a.get(), 0, {n, n}, DType::kF32), b(p.b.get(), 0, {n, n}, DType::kF32);
    Tensor c(p.c.get(), 0, {n, n}, DType::kF32);
    p.queue->write(a, a_host.data());
    p.queue->write(b, b_host.data());
    p.results.assign(10, std::vector<float>(n * n));
    for (auto& result : p.results) {
      kernels::gemm(*p.queue, d % 2 == 1, false, 1.0f, a, b, 0.0f, c);
      p.queue->read(result.data(), c);
    }
  }
  for (PerDevice& p : per) p.queue->synchronize();
  for (size_t d = 0; d < per.size(); ++d) {
    const bool trans_a = d % 2 == 1;
    for (int64_t i = 0; i < n; i += 7) {  // a sample of entries against double sums
      for (int64_t j = 0; j < n; j += 5) {
        double want = 0.0;
        for (int64_t k = 0; k < n; ++k) {
          want += double(trans_a ? a_host[k * n + i] : a_host[i * n + k]) * b_host[k * n + j];
        }
        for (const auto& result : per[d].results) {
          ASSERT_NEAR(result[i * n + j], want, 1e-4) << "device " << d << " at " << i << "," << j;
        }
      }
    }
  }
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
