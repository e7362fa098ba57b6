// The device conformance fixture (ggml's test-backend-ops idea): every TEST_P written
// against DeviceTest runs once per backend listed in conformance_backends(), each test on
// a fresh device with one compute queue. A backend joins the suite by adding a factory
// below; one whose hardware is absent should still be listed and GTEST_SKIP with a reason.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "device/amd/kfd_access.h"
#include "device/amd/mock/mock_devices.h"
#include "device/cpu/cpu_device.h"
#include "device/device.h"
#include "device/kernels.h"
#include "runtime/error.h"

namespace petaring::testing {

struct DeviceFactory {
  std::string name;  // a gtest name: letters, digits, underscores
  std::function<std::unique_ptr<Device>()> open;
};
// gtest prints the parameter of a failed test with this.
inline void PrintTo(const DeviceFactory& factory, std::ostream* out) { *out << factory.name; }

// Why the amd hardware cases cannot run here ("" when they can): they need a readable
// /dev/kfd and a gfx11 GPU in KFD's topology.
inline std::string amd_hardware_skip_reason() {
  auto sys = amd::make_real_sys();
  if (!sys->exists(amd::kKfdPath)) return "no /dev/kfd on this host (no amdgpu kernel driver)";
  const int fd = sys->open(amd::kKfdPath, 02 /* O_RDWR */);
  if (fd < 0) return "/dev/kfd cannot be opened: " + amd::errno_text(fd);
  sys->close(fd);
  for (const auto& gpu : amd::discover_amd_gpus(*sys)) {
    if (gpu.arch.rfind("gfx11", 0) == 0) return "";
  }
  return "KFD's topology lists no gfx11 GPU";
}

inline std::vector<DeviceFactory> conformance_backends() {
  return {
      {"cpu", [] {
         CpuDeviceOptions options;
         options.count = 1;
         options.memory_bytes = 256ull << 20;
         options.threads = 1;
         return std::move(open_cpu_devices(options).front());
       }},
      // The amd backend over the mock KFD (a 7900 XTX box): the real driver code, with
      // packets executed on the CPU. Skips when the gfx1100 code objects were not built.
      {"amd_mock", []() -> std::unique_ptr<Device> {
         if (amd::default_code_object_path().empty()) {
           [] { GTEST_SKIP() << "the gfx1100 code objects were not built (clang-16 and "
                                "ld.lld-16 missing at configure time)"; }();
           return nullptr;
         }
         amd::AmdDeviceOptions options;
         options.timeout = std::chrono::milliseconds(20000);
         return std::move(amd::open_mock_amd_devices(std::string(PETARING_SOURCE_DIR) +
                                                     "/tests/fixtures/amd/7900xtx/sys",
                                                     options)
                              .front());
       }},
      // The same, with dispatches running the GPU kernels' own source compiled for the
      // host: checks the launch shapes and kernargs the driver writes against the GPU code.
      {"amd_mock_gpu_source", []() -> std::unique_ptr<Device> {
         if (amd::default_code_object_path().empty()) {
           [] { GTEST_SKIP() << "the gfx1100 code objects were not built (clang-16 and "
                                "ld.lld-16 missing at configure time)"; }();
           return nullptr;
         }
         amd::AmdDeviceOptions options;
         options.timeout = std::chrono::milliseconds(60000);
         return std::move(amd::open_mock_amd_devices(std::string(PETARING_SOURCE_DIR) +
                                                         "/tests/fixtures/amd/7900xtx/sys",
                                                     options, {}, -1,
                                                     amd::MockKernels::kGpuSource)
                              .front());
       }},
      // The amd backend on a real GPU: skips with the reason when there is none.
      {"amd_hardware", []() -> std::unique_ptr<Device> {
         const std::string reason = amd_hardware_skip_reason();
         if (!reason.empty()) {
           [&] { GTEST_SKIP() << "amd hardware cases skipped: " << reason; }();
           return nullptr;
         }
         return std::move(amd::open_amd_devices(amd::make_real_sys(), amd::kSysfsRoot).front());
       }},
  };
}

class DeviceTest : public ::testing::TestWithParam<DeviceFactory> {
 protected:
  void SetUp() override {
    device_ = GetParam().open();
    if (device_ == nullptr) return;  // the factory skipped
    queue_ = device_->create_queue(QueueKind::kCompute);
  }
  void TearDown() override {
    queue_.reset();
    buffers_.clear();
    device_.reset();
  }

  // A tensor in a buffer of its own, kept alive until the test ends. Contents unspecified.
  Tensor make(Shape shape, DType dtype = DType::kF32) {
    const size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
    buffers_.push_back(device_->allocate(bytes));
    return Tensor(buffers_.back().get(), 0, shape, dtype);
  }
  // Copies `values` to the device (synchronously).
  Tensor upload(const std::vector<float>& values, Shape shape) {
    Tensor t = make(shape);
    set(t, values);
    return t;
  }
  Tensor upload_labels(const std::vector<int32_t>& labels) {
    Tensor t = make(Shape{static_cast<int64_t>(labels.size())}, DType::kI32);
    queue_->write(t, labels.data());
    queue_->synchronize();
    return t;
  }
  void set(const Tensor& t, const std::vector<float>& values) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
    queue_->write(t, values.data());
    queue_->synchronize();
  }
  // Waits for the queue, then copies `t` back.
  std::vector<float> download(const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    queue_->read(out.data(), t);
    queue_->synchronize();
    return out;
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Queue> queue_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

inline std::string backend_name(const ::testing::TestParamInfo<DeviceFactory>& info) {
  return info.param.name;
}

// Runs `fn`, expects an Error of `kind` whose message contains every one of `parts`;
// returns the message.
inline std::string expect_error(const std::function<void()>& fn, ErrorKind kind,
                                const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(error_kind_name(e.kind()), error_kind_name(kind)) << e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "expected '" << part << "' in: " << e.what();
    }
    return e.what();
  }
  ADD_FAILURE() << "expected an Error of kind " << error_kind_name(kind);
  return "";
}

// Deterministic values in [lo, hi).
inline std::vector<float> random_values(size_t count, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::vector<float> out(count);
  uint32_t state = seed * 2654435761u + 12345u;
  for (float& v : out) {
    state = state * 1664525u + 1013904223u;
    v = lo + (hi - lo) * static_cast<float>(state >> 8) / static_cast<float>(1u << 24);
  }
  return out;
}

// Gradient checks: sum(weights * values) in double.
inline double weighted_sum(const std::vector<float>& weights, const std::vector<float>& values) {
  EXPECT_EQ(weights.size(), values.size());
  double sum = 0.0;
  for (size_t i = 0; i < values.size(); ++i) sum += double(weights[i]) * double(values[i]);
  return sum;
}

// dL/dx[i] = (L(x + h e_i) - L(x - h e_i)) / 2h for each i.
inline std::vector<double> numeric_gradient(std::vector<float> x,
                                     const std::function<double(const std::vector<float>&)>& loss,
                                     float h) {
  std::vector<double> gradient(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double plus = loss(x);
    x[i] = saved - h;
    const double minus = loss(x);
    x[i] = saved;
    gradient[i] = (plus - minus) / (2.0 * double(h));
  }
  return gradient;
}

// EXPECT_NEAR per element with tolerance atol + rtol * |numeric|.
inline void expect_close(const std::vector<float>& analytic, const std::vector<double>& numeric,
                  double atol, double rtol, const std::string& what) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  for (size_t i = 0; i < analytic.size(); ++i) {
    EXPECT_NEAR(analytic[i], numeric[i], atol + rtol * std::fabs(numeric[i]))
        << what << " element " << i;
  }
}

}  // namespace petaring::testing

#define PETARING_INSTANTIATE_DEVICE_SUITE(suite)                                        \
  INSTANTIATE_TEST_SUITE_P(Backends, suite,                                              \
                           ::testing::ValuesIn(::petaring::testing::conformance_backends()), \
                           ::petaring::testing::backend_name)
