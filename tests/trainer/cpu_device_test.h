// Test fixture: one virtual GPU (cpu backend, one thread) and a compute queue, with
// helpers to place token ids on it. Header-only: the layer's test program is built from
// *_test.cc files alone.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "device/cpu/cpu_device.h"

namespace petaring::testing_trainer {

class CpuDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CpuDeviceOptions options;
    options.threads = 1;
    device_ = std::move(open_cpu_devices(options)[0]);
    queue_ = device_->create_queue(QueueKind::kCompute);
  }
  void TearDown() override {
    buffers_.clear();
    queue_.reset();
  }
  // `ids` as an i32 (batch, ids / batch) tensor on the device, kept until TearDown.
  Tensor tokens(const std::vector<int32_t>& ids, int64_t batch) {
    const int64_t steps = static_cast<int64_t>(ids.size()) / batch;
    buffers_.push_back(device_->allocate(ids.size() * sizeof(int32_t)));
    Tensor t(buffers_.back().get(), 0, Shape{batch, steps}, DType::kI32);
    std::copy(ids.begin(), ids.end(), t.data<int32_t>());
    return t;
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Queue> queue_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

}  // namespace petaring::testing_trainer
