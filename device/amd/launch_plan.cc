#include "device/amd/launch_plan.h"

#include <array>
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
  p.kernel = {};
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

const Tensor& tokens_of(const Tensor& tokens, std::string_view kernel) {
  if (tokens.dtype != DType::kI32 || tokens.shape.rank() != 2) {
    PR_FAIL(kInvalidArgument, kernel, ": tokens must be i32 (B, T), got ", tokens.shape, " ",
            dtype_name(tokens.dtype));
  }
  return tokens;
}

// (B, T, C, H) of an attention launch from qkv (B, T, 3C) and ints {heads}.
std::array<uint32_t, 4> attention_dims(const Tensor& qkv, int64_t heads, std::string_view k) {
  PR_CHECK_EQ(qkv.shape.rank(), 3) << k << " qkv " << qkv.shape;
  const int64_t c = qkv.shape[2] / 3;
  PR_CHECK(heads > 0 && qkv.shape[2] == 3 * c && c % heads == 0)
      << k << " qkv " << qkv.shape << " heads " << heads;
  return {count32(qkv.shape[0], k), count32(qkv.shape[1], k), count32(c, k), count32(heads, k)};
}

LaunchPlan plan_one(std::string_view k, const KernelArgs& a,
                    const std::function<uint64_t(const Tensor&)>& address) {
  auto f32 = [&](size_t i, const char* role) {
    expect_dtype(a.tensors[i], DType::kF32, k, role);
    return address(a.tensors[i]);
  };
  auto b16 = [&](size_t i, const char* role) {
    expect_dtype(a.tensors[i], DType::kBF16, k, role);
    return address(a.tensors[i]);
  };
  // The mixed-precision kernels take their f32 twin's kernargs (kernargs.h): `in16` is
  // b16 for the buffers the contract makes bf16 in the *_bf16 kernel, f32 otherwise.
  const bool mixed = k.ends_with("_bf16");
  auto in16 = [&](size_t i, const char* role) { return mixed ? b16(i, role) : f32(i, role); };
  auto flt = [&](size_t i) { return static_cast<float>(a.floats[i]); };
  if (k == "gemm" || k == "gemm_bf16") {
    expect_kernel_args(a, 3, 2, 2, k);
    const Tensor& A = a.tensors[0];
    const Tensor& C = a.tensors[2];
    PR_CHECK(A.shape.rank() == 2 && C.shape.rank() == 2) << k << " A " << A.shape << ", C " << C.shape;
    PrGemmArgs g{};
    g.a = in16(0, "A");
    g.b = in16(1, "B");
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
  if (k == "embedding_forward") {
    expect_kernel_args(a, 4, 0, 0, k);
    const Tensor& tokens = tokens_of(a.tensors[0], k);
    const Tensor& wte = a.tensors[1];
    PR_CHECK(wte.shape.rank() == 2 && a.tensors[2].shape.rank() == 2 &&
             a.tensors[2].shape[0] >= tokens.shape[1] &&
             a.tensors[3].numel() == tokens.numel() * wte.shape[1])
        << k << " wte " << wte.shape << ", wpe " << a.tensors[2].shape << ", out "
        << a.tensors[3].shape;
    PrEmbeddingForwardArgs g{address(tokens), f32(1, "wte"), f32(2, "wpe"), f32(3, "out"), 0,
                             count32(tokens.numel(), k), count32(tokens.shape[1], k),
                             count32(wte.shape[1], k), count32(wte.shape[0], k)};
    LaunchPlan p = plan(g, uint64_t{g.count} * g.channels);
    p.status_offset = offsetof(PrEmbeddingForwardArgs, status);
    return p;
  }
  if (k == "embedding_backward") {
    expect_kernel_args(a, 4, 2, 0, k);
    const Tensor& tokens = tokens_of(a.tensors[1], k);
    const Tensor& dwte = a.tensors[2];
    const Tensor& dwpe = a.tensors[3];
    PR_CHECK(dwte.shape.rank() == 2 && dwpe.shape.rank() == 2 &&
             dwpe.shape[0] >= tokens.shape[1] && dwpe.shape[1] == dwte.shape[1] &&
             a.tensors[0].numel() == tokens.numel() * dwte.shape[1])
        << k << " dwte " << dwte.shape << ", dwpe " << dwpe.shape << ", dout "
        << a.tensors[0].shape;
    PrEmbeddingBackwardArgs g{f32(0, "dout"), address(tokens), f32(2, "dwte"), f32(3, "dwpe"), 0,
                              count32(tokens.numel(), k), count32(tokens.shape[1], k),
                              count32(dwte.shape[1], k), count32(dwte.shape[0], k),
                              count32(dwpe.shape[0], k), flt(0), flt(1), 0};
    LaunchPlan p = plan(g, uint64_t{count32(dwte.numel() + dwpe.numel(), k)});
    p.status_offset = offsetof(PrEmbeddingBackwardArgs, status);
    return p;
  }
  if (k == "linear_bf16") {
    expect_kernel_args(a, 4, 0, 0, k);
    const Tensor& x = a.tensors[0];  // (N, I)
    const Tensor& w = a.tensors[1];  // (O, I)
    const Tensor& y = a.tensors[3];  // (N, O)
    PR_CHECK(x.shape.rank() == 2 && w.shape.rank() == 2 && w.shape[1] == x.shape[1] &&
             y.numel() == x.shape[0] * w.shape[0] && a.tensors[2].numel() == w.shape[0])
        << k << " X " << x.shape << ", W " << w.shape << ", Y " << y.shape;
    if (y.dtype != DType::kF32 && y.dtype != DType::kBF16) {
      PR_FAIL(kInvalidArgument, k, ": Y must be f32 or bf16, got ", dtype_name(y.dtype));
    }
    PrLinearArgs g{b16(0, "X"), b16(1, "W"), f32(2, "bias"), address(y),
                   count32(x.shape[0], k), count32(w.shape[0], k), count32(x.shape[1], k),
                   y.dtype == DType::kBF16 ? 1u : 0u};
    LaunchPlan p = plan(g, 0);
    p.workgroup = {PR_GEMM_TILE, PR_GEMM_TILE, 1};
    p.grid = {blocks(g.outs, PR_GEMM_TILE), blocks(g.rows, PR_GEMM_TILE), 1};
    return p;
  }
  if (k == "scratch_probe") {  // a diagnostic (kernargs.h): x and y i32 of one count
    expect_kernel_args(a, 2, 0, 0, k);
    expect_dtype(a.tensors[0], DType::kI32, k, "x");
    expect_dtype(a.tensors[1], DType::kI32, k, "y");
    PR_CHECK_EQ(a.tensors[0].numel(), a.tensors[1].numel()) << "scratch_probe x and y";
    PrScratchProbeArgs g{address(a.tensors[0]), address(a.tensors[1]),
                         count32(a.tensors[0].numel(), k)};
    return plan(g, g.count);
  }
  if (k == "convert") {
    expect_kernel_args(a, 2, 0, 0, k);
    const Tensor& x = a.tensors[0];
    const Tensor& y = a.tensors[1];
    PR_CHECK_EQ(x.numel(), y.numel()) << "convert X " << x.shape << ", Y " << y.shape;
    uint32_t mode;
    if (x.dtype == DType::kF32 && y.dtype == DType::kBF16) {
      mode = PR_CONVERT_NARROW;
    } else if (x.dtype == DType::kBF16 && y.dtype == DType::kF32) {
      mode = PR_CONVERT_WIDEN;
    } else if (x.dtype == y.dtype && (x.dtype == DType::kF32 || x.dtype == DType::kBF16)) {
      mode = x.dtype == DType::kBF16 ? PR_CONVERT_COPY16 : PR_CONVERT_COPY32;
    } else {
      PR_FAIL(kInvalidArgument, "convert: ", dtype_name(x.dtype), " to ", dtype_name(y.dtype),
              " is not implemented; use f32 and bf16");
    }
    PrConvertArgs g{address(x), address(y), count32(x.numel(), k), mode};
    return plan(g, g.count);
  }
  if (k == "layernorm_forward" || k == "layernorm_forward_bf16") {
    expect_kernel_args(a, 6, 1, 0, k);
    const Tensor& x = a.tensors[0];
    PR_CHECK_EQ(x.shape.rank(), 2) << k << " X " << x.shape;
    const uint32_t rows = count32(x.shape[0], k), cols = count32(x.shape[1], k);
    PR_CHECK(a.tensors[1].numel() == int64_t{cols} && a.tensors[2].numel() == int64_t{cols} &&
             a.tensors[3].numel() == x.numel() && a.tensors[4].numel() == int64_t{rows} &&
             a.tensors[5].numel() == int64_t{rows})
        << k << " shapes for X " << x.shape;
    PrLayernormForwardArgs g{f32(0, "X"),  f32(1, "weight"), f32(2, "bias"), in16(3, "Y"),
                             f32(4, "mean"), f32(5, "rstd"), rows, cols, flt(0), 0};
    return plan(g, rows);
  }
  if (k == "layernorm_backward") {
    expect_kernel_args(a, 8, 2, 0, k);
    const Tensor& x = a.tensors[1];
    PR_CHECK_EQ(x.shape.rank(), 2) << k << " X " << x.shape;
    const uint32_t rows = count32(x.shape[0], k), cols = count32(x.shape[1], k);
    PR_CHECK(a.tensors[0].numel() == x.numel() && a.tensors[2].numel() == int64_t{cols} &&
             a.tensors[3].numel() == int64_t{rows} && a.tensors[4].numel() == int64_t{rows} &&
             a.tensors[5].numel() == x.numel() && a.tensors[6].numel() == int64_t{cols} &&
             a.tensors[7].numel() == int64_t{cols})
        << k << " shapes for X " << x.shape;
    PrLayernormBackwardArgs g{f32(0, "dY"),   f32(1, "X"),       f32(2, "weight"),
                              f32(3, "mean"), f32(4, "rstd"),    f32(5, "dX"),
                              f32(6, "dweight"), f32(7, "dbias"), rows, cols, flt(0), flt(1)};
    return plan(g, uint64_t{rows} + cols);
  }
  if (k == "gelu" || k == "gelu_bf16") {
    expect_kernel_args(a, 2, 0, 0, k);
    PR_CHECK_EQ(a.tensors[0].numel(), a.tensors[1].numel()) << k << " X and Y";
    PrGeluArgs g{in16(0, "X"), in16(1, "Y"), count32(a.tensors[0].numel(), k)};
    return plan(g, g.count);
  }
  if (k == "gelu_backward" || k == "gelu_backward_bf16" || k == "add") {
    expect_kernel_args(a, 3, 0, 0, k);
    PR_CHECK(a.tensors[1].numel() == a.tensors[0].numel() &&
             a.tensors[2].numel() == a.tensors[0].numel()) << k << " sizes";
    const uint32_t count = count32(a.tensors[0].numel(), k);
    if (k == "add") {
      PrAddArgs g{f32(0, "X"), f32(1, "Y"), f32(2, "Z"), count};
      return plan(g, count);
    }
    PrGeluBackwardArgs g{in16(0, "X"), f32(1, "dY"), f32(2, "dX"), count};
    return plan(g, count);
  }
  if (k == "attention_forward" || k == "attention_forward_bf16") {
    expect_kernel_args(a, 3, 0, 1, k);
    const auto [b, t, c, h] = attention_dims(a.tensors[0], a.ints[0], k);
    PR_CHECK(a.tensors[1].numel() == int64_t{b} * t * c &&
             a.tensors[2].numel() == int64_t{b} * h * t * t)
        << k << " out " << a.tensors[1].shape << ", probs " << a.tensors[2].shape;
    PrAttentionForwardArgs g{in16(0, "qkv"), in16(1, "out"), in16(2, "probs"), b, t, c, h};
    count32(int64_t{b} * h * t * t, k);
    return plan(g, uint64_t{b} * h * t);
  }
  PR_FAIL(kUnimplemented, "the amd backend has no launch plan for kernel '", k,
          "'; it runs only the kernels its code object names");
}

}  // namespace

std::vector<LaunchPlan> plan_launch(std::string_view k, const KernelArgs& a,
                                    const std::function<uint64_t(const Tensor&)>& address) {
  if (k == "attention_backward" || k == "attention_backward_bf16") {
    const bool mixed = k == "attention_backward_bf16";  // qkv and probs bf16
    expect_kernel_args(a, 5, 0, 1, k);
    const auto [b, t, c, h] = attention_dims(a.tensors[1], a.ints[0], k);
    PR_CHECK(a.tensors[0].numel() == int64_t{b} * t * c &&
             a.tensors[2].numel() == int64_t{b} * h * t * t &&
             a.tensors[3].numel() == int64_t{b} * t * 3 * c &&
             a.tensors[4].numel() == int64_t{b} * h * t * t)
        << k << " dout " << a.tensors[0].shape << ", dqkv " << a.tensors[3].shape;
    for (size_t i = 0; i < 5; ++i) {
      static const char* const roles[] = {"dout", "qkv", "probs", "dqkv", "scratch"};
      const bool half = mixed && (i == 1 || i == 2);
      expect_dtype(a.tensors[i], half ? DType::kBF16 : DType::kF32, k, roles[i]);
    }
    count32(int64_t{b} * h * t * t, k);
    PrAttentionBackwardArgs g{address(a.tensors[0]), address(a.tensors[1]), address(a.tensors[2]),
                              address(a.tensors[3]), address(a.tensors[4]), b, t, c, h};
    LaunchPlan rows = plan(g, uint64_t{b} * h * t);
    rows.kernel = mixed ? "attention_backward_bf16" : "attention_backward";
    LaunchPlan columns = rows;  // then dK and dV from the dS rows the first one wrote
    columns.kernel = mixed ? "attention_backward_kv_bf16" : "attention_backward_kv";
    return {rows, columns};
  }
  LaunchPlan p = plan_one(k, a, address);
  p.kernel = k;
  return {p};
}

bool is_helper_kernel(std::string_view name) {
  return name == "attention_backward_kv" || name == "attention_backward_kv_bf16" ||
         name == "scratch_probe";
}

void throw_launch_status(std::string_view kernel, uint64_t status, const KernelArgs& args) {
  const auto value = static_cast<int32_t>(status >> 32);
  const int64_t index = static_cast<int64_t>(status & 0xffffffffu) - 1;
  if (kernel == "embedding_forward" || kernel == "embedding_backward") {
    const bool forward = kernel == "embedding_forward";
    const Tensor& tokens = args.tensors[forward ? 0 : 1];
    const int64_t steps = tokens.shape[1], vocab = args.tensors[forward ? 1 : 2].shape[0];
    PR_FAIL(kInvalidArgument, kernel, ": token ", value, " at (", index / steps, ", ",
            index % steps, ") is out of range [0, ", vocab,
            "); the data's token ids must be below the model's vocab");
  }
  PR_FAIL(kInvalidArgument, kernel, ": label ", value, " in row ", index, " is out of range [0, ",
          args.tensors[0].shape[1], "); check the data set's labels against the model's output size");
}

}  // namespace petaring::amd
