#include "device/amd/launch_plan.h"

#include <cstring>

#include "device/amd/gpu/kernargs.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::amd {
namespace {

void expect_dtype(const Tensor& t, DType dtype, std::string_view kernel, const char* role) {
  if (t.dtype != dtype) {
    PR_FAIL(kUnimplemented, kernel, ": ", role, " is ", dtype_name(t.dtype), "; the amd backend's ",
            kernel, " takes ", dtype_name(dtype), " only for now");
  }
}

uint32_t count32(int64_t n, std::string_view kernel) {
  if (n < 0 || n > int64_t{0xffffffff}) {
    PR_FAIL(kUnimplemented, kernel, ": ", n, " elements; the GPU kernels take 32-bit counts");
  }
  return static_cast<uint32_t>(n);
}

uint32_t blocks(uint64_t items, uint32_t per) { return static_cast<uint32_t>((items + per - 1) / per); }

template <typename Args>
LaunchPlan plan(const Args& args, uint64_t work_items) {
  LaunchPlan p;
  p.kernargs.resize(sizeof(Args));
  std::memcpy(p.kernargs.data(), &args, sizeof(Args));
  p.workgroup = {PR_BLOCK, 1, 1};
  p.grid = {blocks(work_items, PR_BLOCK), 1, 1};
  return p;
}

// One workgroup of PR_BLOCK (the reductions), even for zero elements.
template <typename Args>
LaunchPlan plan_single(const Args& args) {
  LaunchPlan p = plan(args, PR_BLOCK);
  return p;
}

}  // namespace

LaunchPlan plan_launch(std::string_view k, const KernelArgs& a,
                       const std::function<uint64_t(const Tensor&)>& address) {
  auto f32 = [&](size_t i, const char* role) {
    expect_dtype(a.tensors[i], DType::kF32, k, role);
    return address(a.tensors[i]);
  };
  auto flt = [&](size_t i) { return static_cast<float>(a.floats[i]); };
  if (k == "gemm") {
    expect_kernel_args(a, 3, 2, 2, k);
    const Tensor& A = a.tensors[0];
    const Tensor& C = a.tensors[2];
    PR_CHECK(A.shape.rank() == 2 && C.shape.rank() == 2) << "gemm A " << A.shape << ", C " << C.shape;
    PrGemmArgs g{};
    g.a = f32(0, "A");
    g.b = f32(1, "B");
    g.c = f32(2, "C");
    g.m = count32(C.shape[0], k);
    g.n = count32(C.shape[1], k);
    g.trans_a = a.ints[0] != 0;
    g.trans_b = a.ints[1] != 0;
    g.k = count32(g.trans_a ? A.shape[0] : A.shape[1], k);
    g.alpha = flt(0);
    g.beta = flt(1);
    LaunchPlan p = plan(g, 0);
    p.workgroup = {PR_GEMM_TILE, PR_GEMM_TILE, 1};
    p.grid = {blocks(g.n, PR_GEMM_TILE), blocks(g.m, PR_GEMM_TILE), 1};
    return p;
  }
  if (k == "bias_add" || k == "bias_grad") {
    const bool grad = k == "bias_grad";
    expect_kernel_args(a, 2, grad ? 1 : 0, 0, k);
    const uint32_t cols = count32(a.tensors[1].numel(), k);
    const int64_t total = a.tensors[0].numel();
    PR_CHECK(cols > 0 ? total % cols == 0 : total == 0) << k << " " << a.tensors[0].shape;
    const uint32_t rows = cols > 0 ? count32(total / cols, k) : 0;
    if (grad) {
      PrBiasGradArgs g{f32(0, "dY"), f32(1, "dbias"), rows, cols, flt(0)};
      return plan(g, cols);
    }
    PrBiasAddArgs g{f32(0, "Y"), f32(1, "bias"), rows, cols};
    return plan(g, uint64_t{rows} * cols);
  }
  if (k == "relu") {
    expect_kernel_args(a, 2, 0, 0, k);
    PR_CHECK_EQ(a.tensors[0].numel(), a.tensors[1].numel()) << "relu X and Y";
    PrReluArgs g{f32(0, "X"), f32(1, "Y"), count32(a.tensors[0].numel(), k)};
    return plan(g, g.count);
  }
  if (k == "relu_backward") {
    expect_kernel_args(a, 3, 0, 0, k);
    PR_CHECK(a.tensors[1].numel() == a.tensors[0].numel() &&
             a.tensors[2].numel() == a.tensors[0].numel()) << "relu_backward sizes";
    PrReluBackwardArgs g{f32(0, "Y"), f32(1, "dY"), f32(2, "dX"), count32(a.tensors[0].numel(), k)};
    return plan(g, g.count);
  }
  if (k == "softmax_xent_forward" || k == "softmax_xent_backward") {
    const bool forward = k == "softmax_xent_forward";
    expect_kernel_args(a, forward ? 4 : 3, forward ? 0 : 1, 0, k);
    const Tensor& logits = a.tensors[0];
    PR_CHECK_EQ(logits.shape.rank(), 2) << k << " " << logits.shape;
    if (a.tensors[1].dtype != DType::kI32) {
      PR_FAIL(kInvalidArgument, k, ": labels must be i32, got ", dtype_name(a.tensors[1].dtype));
    }
    const uint32_t rows = count32(logits.shape[0], k), cols = count32(logits.shape[1], k);
    PR_CHECK_EQ(a.tensors[1].numel(), int64_t{rows}) << k << " labels";
    if (forward) {
      PrSoftmaxXentForwardArgs g{f32(0, "logits"), address(a.tensors[1]), f32(2, "probs"),
                                 f32(3, "loss"), 0, rows, cols};
      LaunchPlan p = plan_single(g);
      p.status_offset = offsetof(PrSoftmaxXentForwardArgs, status);
      return p;
    }
    PrSoftmaxXentBackwardArgs g{f32(0, "probs"), address(a.tensors[1]), f32(2, "dlogits"), 0,
                                rows, cols, flt(0)};
    LaunchPlan p = plan(g, uint64_t{rows} * cols);
    p.status_offset = offsetof(PrSoftmaxXentBackwardArgs, status);
    return p;
  }
  if (k == "sgd_momentum") {
    expect_kernel_args(a, 3, 3, 1, k);
    PrSgdMomentumArgs g{f32(0, "param"), f32(1, "grad"), f32(2, "velocity"),
                        count32(a.tensors[0].numel(), k), flt(0), flt(1), flt(2),
                        a.ints[0] != 0 ? 1u : 0u};
    return plan(g, g.count);
  }
  if (k == "adamw") {
    expect_kernel_args(a, 4, 5, 1, k);
    PR_CHECK_GE(a.ints[0], 1) << "adamw step t";
    const uint32_t count = count32(a.tensors[0].numel(), k);
    PrAdamwArgs g = gpu::pr_make_adamw_args(f32(0, "param"), f32(1, "grad"), f32(2, "m"),
                                            f32(3, "v"), count, a.floats[0], a.floats[1],
                                            a.floats[2], a.floats[3], a.floats[4], a.ints[0]);
    return plan(g, count);
  }
  if (k == "sum_squares") {
    expect_kernel_args(a, 2, 0, 0, k);
    PR_CHECK_EQ(a.tensors[1].numel(), 1) << "sum_squares out";
    PrSumSquaresArgs g{f32(0, "X"), f32(1, "out"), count32(a.tensors[0].numel(), k)};
    return plan_single(g);
  }
  if (k == "fill") {
    expect_kernel_args(a, 1, 1, 0, k);
    PrFillArgs g{f32(0, "X"), count32(a.tensors[0].numel(), k), flt(0)};
    return plan(g, g.count);
  }
  if (k == "copy") {
    expect_kernel_args(a, 2, 0, 0, k);
    PR_CHECK_EQ(a.tensors[0].bytes(), a.tensors[1].bytes()) << "copy X and Y bytes";
    PrCopyArgs g{address(a.tensors[0]), address(a.tensors[1]),
                 count32(static_cast<int64_t>(a.tensors[0].bytes()), k)};
    return plan(g, (uint64_t{g.bytes} + 3) / 4);
  }
  if (k == "scale") {
    expect_kernel_args(a, 1, 1, 0, k);
    PrScaleArgs g{f32(0, "X"), count32(a.tensors[0].numel(), k), flt(0)};
    return plan(g, g.count);
  }
  PR_FAIL(kUnimplemented, "the amd backend has no launch plan for kernel '", k, "'");
}

void throw_label_status(std::string_view kernel, uint64_t status, int64_t classes) {
  const auto label = static_cast<int32_t>(status >> 32);
  const int64_t row = static_cast<int64_t>(status & 0xffffffffu) - 1;
  PR_FAIL(kInvalidArgument, kernel, ": label ", label, " in row ", row, " is out of range [0, ",
          classes, "); check the data set's labels against the model's output size");
}

}  // namespace petaring::amd
