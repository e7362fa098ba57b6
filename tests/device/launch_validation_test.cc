// The typed launchers reject bad shapes and dtypes on the host, before anything is
// enqueued, and report a device without the kernel as kUnimplemented.
#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

using LaunchValidationTest = DeviceTest;

TEST_P(LaunchValidationTest, KernelTableHasEveryKernelOfKernelsH) {
  for (const char* name : {"gemm", "bias_add", "bias_grad", "relu", "relu_backward",
                           "softmax_xent_forward", "softmax_xent_backward", "sgd_momentum",
                           "adamw", "sum_squares", "fill", "copy", "scale"}) {
    const Kernel* kernel = device_->find_kernel(name);
    ASSERT_NE(kernel, nullptr) << name;
    EXPECT_EQ(kernel->name(), name);
  }
  EXPECT_EQ(device_->find_kernel("no_such_kernel"), nullptr);
  EXPECT_GE(device_->kernel_names().size(), 13u);
}

TEST_P(LaunchValidationTest, GemmShapeMismatchNamesTheShapes) {
  Tensor a = make({3, 5}), b = make({4, 7}), c = make({3, 7});
  expect_error([&] { kernels::gemm(*queue_, false, false, 1.0f, a, b, 0.0f, c); },
               ErrorKind::kInvalidArgument, {"gemm", "(3, 5)", "(4, 7)", "(3, 7)"});
  Tensor bt = make({7, 5}), wrong_c = make({7, 3});
  expect_error([&] { kernels::gemm(*queue_, false, true, 1.0f, a, bt, 0.0f, wrong_c); },
               ErrorKind::kInvalidArgument, {"gemm", "(7, 3)", "transposed"});
  expect_error([&] { kernels::gemm(*queue_, false, false, 1.0f, make({15}), b, 0.0f, c); },
               ErrorKind::kInvalidArgument, {"gemm", "A", "(15)"});
}

TEST_P(LaunchValidationTest, ShapeMismatchesOfElementwiseKernels) {
  Tensor y = make({4, 6}), bias = make({5});
  expect_error([&] { kernels::bias_add(*queue_, y, bias); }, ErrorKind::kInvalidArgument,
               {"bias_add", "(5)", "(4, 6)"});
  expect_error([&] { kernels::bias_grad(*queue_, y, bias, 0.0f); }, ErrorKind::kInvalidArgument,
               {"bias_grad", "(5)", "(4, 6)"});
  expect_error([&] { kernels::relu(*queue_, y, make({6, 4})); }, ErrorKind::kInvalidArgument,
               {"relu", "(4, 6)", "(6, 4)"});
  expect_error([&] { kernels::relu_backward(*queue_, y, y, make({24})); },
               ErrorKind::kInvalidArgument, {"relu_backward", "(24)"});
  expect_error([&] { kernels::sgd_momentum(*queue_, y, make({4, 6}), make({4, 5}), 0.1f, 0.9f, 0.0f, false); },
               ErrorKind::kInvalidArgument, {"sgd_momentum", "velocity", "(4, 5)"});
  expect_error([&] { kernels::copy(*queue_, y, make({23})); }, ErrorKind::kInvalidArgument,
               {"copy", "(23)"});
}

TEST_P(LaunchValidationTest, SoftmaxXentChecksLabelsAndLoss) {
  Tensor logits = make({4, 10}), probs = make({4, 10}), loss = make({1});
  expect_error([&] { kernels::softmax_xent_forward(*queue_, logits, make({4}), probs, loss); },
               ErrorKind::kInvalidArgument, {"labels", "i32", "f32"});
  expect_error(
      [&] { kernels::softmax_xent_forward(*queue_, logits, make({3}, DType::kI32), probs, loss); },
      ErrorKind::kInvalidArgument, {"labels", "(3)", "(4)"});
  Tensor labels = make({4}, DType::kI32);
  expect_error([&] { kernels::softmax_xent_forward(*queue_, logits, labels, probs, make({2})); },
               ErrorKind::kInvalidArgument, {"loss", "(2)"});
  expect_error([&] { kernels::softmax_xent_backward(*queue_, probs, labels, make({4, 9}), 1.0f); },
               ErrorKind::kInvalidArgument, {"softmax_xent_backward", "(4, 9)", "(4, 10)"});
}

TEST_P(LaunchValidationTest, OutputsMayNotOverlapInputs) {
  Tensor whole = make({2, 8});
  Tensor a = whole.slice(0, {2, 4}), c = whole.slice(4, {2, 2});
  Tensor b = make({4, 2});
  expect_error([&] { kernels::gemm(*queue_, false, false, 1.0f, a, b, 0.0f, c); },
               ErrorKind::kInvalidArgument, {"gemm", "overlaps"});
  Tensor x = make({8});
  expect_error([&] { kernels::relu(*queue_, x.slice(0, {4}), x.slice(2, {4})); },
               ErrorKind::kInvalidArgument, {"relu", "overlaps"});
}

TEST_P(LaunchValidationTest, OtherDtypesAreUnimplementedOrInvalid) {
  expect_error([&] { kernels::relu(*queue_, make({4}, DType::kBF16), make({4}, DType::kBF16)); },
               ErrorKind::kUnimplemented, {"relu", "bf16", "f32"});
  expect_error([&] { kernels::scale(*queue_, make({4}, DType::kI64), 2.0f); },
               ErrorKind::kInvalidArgument, {"scale", "i64"});
  // The kernel itself refuses too, for callers that launch without the typed wrappers.
  queue_->launch(*device_->find_kernel("fill"), KernelArgs{{make({4}, DType::kF16)}, {1.0}, {}});
  expect_error([&] { queue_->synchronize(); }, ErrorKind::kUnimplemented, {"f16"});
}

// A device that has every kernel but "gemm" (stands for a backend still being written).
class DeviceWithoutGemm : public Device {
 public:
  explicit DeviceWithoutGemm(Device& inner) : inner_(inner) {}
  const DeviceProperties& properties() const override { return inner_.properties(); }
  std::unique_ptr<Buffer> allocate(size_t bytes) override { return inner_.allocate(bytes); }
  uint64_t memory_used() const override { return inner_.memory_used(); }
  std::unique_ptr<Queue> create_queue(QueueKind kind) override { return nullptr; }
  const Kernel* find_kernel(std::string_view name) const override {
    return name == "gemm" ? nullptr : inner_.find_kernel(name);
  }
  std::vector<std::string> kernel_names() const override { return {"fill"}; }

 private:
  Device& inner_;
};

class QueueOnDevice : public Queue {
 public:
  explicit QueueOnDevice(Device& device) : device_(device) {}
  Device& device() override { return device_; }
  std::string name() const override { return "fake"; }
  void launch(const Kernel&, KernelArgs) override { ADD_FAILURE() << "nothing may launch"; }
  void write(Tensor, const void*) override {}
  void read(void*, Tensor) override {}
  void copy(Tensor, Tensor) override {}
  void host_call(std::function<void()>) override {}
  std::unique_ptr<Event> record() override { return nullptr; }
  void wait_for(std::shared_ptr<Event>) override {}
  void synchronize() override {}

 private:
  Device& device_;
};

TEST_P(LaunchValidationTest, MissingKernelIsUnimplementedNamingDeviceAndKernel) {
  DeviceWithoutGemm partial(*device_);
  QueueOnDevice queue(partial);
  Tensor a = make({2, 2}), b = make({2, 2}), c = make({2, 2});
  expect_error([&] { kernels::gemm(queue, false, false, 1.0f, a, b, 0.0f, c); },
               ErrorKind::kUnimplemented, {device_->name(), "'gemm'"});
}

PETARING_INSTANTIATE_DEVICE_SUITE(LaunchValidationTest);

}  // namespace
}  // namespace petaring::testing
