// The cpu backend's mixed-precision kernels (device/kernels.h, "Mixed precision"): bf16
// storage with f32 arithmetic. Matrix products go to oneDNN's bf16 matmul (f32
// accumulation, AVX-512 BF16 where the CPU has it); element-wise kernels widen to f32,
// compute exactly what their f32 twins compute, and round once when they store bf16.
// Attention widens one (batch, head) pair at a time into per-thread f32 scratch and runs
// the f32 attention of cpu_math.h on it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "device/cpu/cpu_blas.h"
#include "device/cpu/cpu_kernels.h"
#include "device/cpu/cpu_math.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

// The first byte of `tensor` (any dtype) in host memory.
uint8_t* host_bytes(const Tensor& tensor) {
  if (tensor.dtype == DType::kBF16) return reinterpret_cast<uint8_t*>(tensor.data<BF16>());
  return reinterpret_cast<uint8_t*>(tensor.data<float>());
}


void convert_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "convert");
  const Tensor& x = args.tensors[0];
  const Tensor& y = args.tensors[1];
  const int64_t count = x.numel();
  PR_CHECK_EQ(y.numel(), count) << "convert X " << x.shape << ", Y " << y.shape;
  const bool narrow = x.dtype == DType::kF32 && y.dtype == DType::kBF16;
  const bool widen = x.dtype == DType::kBF16 && y.dtype == DType::kF32;
  if (!narrow && !widen && !(x.dtype == y.dtype && (x.dtype == DType::kF32 || x.dtype == DType::kBF16))) {
    PR_FAIL(kInvalidArgument, "convert: ", dtype_name(x.dtype), " to ", dtype_name(y.dtype),
            " is not implemented; use f32 and bf16");
  }
  const uint8_t* from = host_bytes(x);
  uint8_t* to = host_bytes(y);
  const int threads = kernel_team(count);
  const int64_t chunk = (count + threads - 1) / threads;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const int64_t begin = std::min(count, t * chunk), end = std::min(count, begin + chunk);
    if (narrow) {
      cpu::to_bf16(reinterpret_cast<const float*>(from) + begin, 0,
                   reinterpret_cast<BF16*>(to) + begin, 0, 1, end - begin);
    } else if (widen) {
      cpu::to_f32(reinterpret_cast<const BF16*>(from) + begin, 0,
                  reinterpret_cast<float*>(to) + begin, 0, 1, end - begin);
    } else {
      const size_t size = dtype_size(x.dtype);
      std::copy(from + begin * size, from + end * size, to + begin * size);
    }
  }
}

void gemm_bf16_kernel(const KernelArgs& args) {
  const char* kName = "gemm_bf16";
  expect_kernel_args(args, 3, 2, 2, kName);
  const Tensor& a = args.tensors[0];
  const Tensor& b = args.tensors[1];
  const Tensor& c = args.tensors[2];
  const bool trans_a = args.ints[0] != 0;
  const bool trans_b = args.ints[1] != 0;
  PR_CHECK(a.shape.rank() == 2 && b.shape.rank() == 2 && c.shape.rank() == 2)
      << kName << " A " << a.shape << ", B " << b.shape << ", C " << c.shape;
  const int64_t m = c.shape[0], n = c.shape[1];
  const int64_t k = trans_a ? a.shape[0] : a.shape[1];
  PR_CHECK_EQ(trans_a ? a.shape[1] : a.shape[0], m) << kName << " rows of op(A)";
  PR_CHECK(k == (trans_b ? b.shape[1] : b.shape[0]) && n == (trans_b ? b.shape[0] : b.shape[1]))
      << kName << " B " << b.shape << " for C " << c.shape;
  cpu::gemm_bf16(trans_a, trans_b, m, n, k, static_cast<float>(args.floats[0]),
                 bf16_data(a, kName, "A"), a.shape[1], bf16_data(b, kName, "B"), b.shape[1],
                 static_cast<float>(args.floats[1]), f32_data(c, kName, "C"), DType::kF32, n);
}

void linear_bf16_kernel(const KernelArgs& args) {
  const char* kName = "linear_bf16";
  expect_kernel_args(args, 4, 0, 0, kName);
  const Tensor& x = args.tensors[0];  // (N, I)
  const Tensor& w = args.tensors[1];  // (O, I)
  const Tensor& y = args.tensors[3];  // (N, O)
  PR_CHECK(x.shape.rank() == 2 && w.shape.rank() == 2 && w.shape[1] == x.shape[1] &&
           y.numel() == x.shape[0] * w.shape[0] && args.tensors[2].numel() == w.shape[0])
      << kName << " X " << x.shape << ", W " << w.shape << ", Y " << y.shape;
  PR_CHECK(y.dtype == DType::kF32 || y.dtype == DType::kBF16) << kName << " Y dtype";
  const int64_t n = x.shape[0], out = w.shape[0], in = x.shape[1];
  cpu::gemm_bf16(false, true, n, out, in, 1.0f, bf16_data(x, kName, "X"), in,
                 bf16_data(w, kName, "W"), in, 0.0f, host_bytes(y), y.dtype, out,
                 f32_data(args.tensors[2], kName, "bias"));
}

void gelu_bf16_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "gelu_bf16");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK_EQ(args.tensors[1].numel(), count) << "gelu_bf16 X and Y";
  const uint16_t* x = &bf16_data(args.tensors[0], "gelu_bf16", "X")->bits;
  uint16_t* y = &bf16_data(args.tensors[1], "gelu_bf16", "Y")->bits;  // may alias x
#pragma omp parallel for simd simdlen(16) schedule(static) num_threads(kernel_team(count))
  for (int64_t i = 0; i < count; ++i) y[i] = cpu::bf16_bits(cpu::gelu_value(cpu::bf16_value(x[i])));
}

void gelu_backward_bf16_kernel(const KernelArgs& args) {
  const char* kName = "gelu_backward_bf16";
  expect_kernel_args(args, 3, 0, 0, kName);
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count)
      << kName << " X, dY and dX sizes";
  const uint16_t* __restrict x = &bf16_data(args.tensors[0], kName, "X")->bits;
  const float* dy = f32_data(args.tensors[1], kName, "dY");
  float* dx = f32_data(args.tensors[2], kName, "dX");  // may alias dy
#pragma omp parallel for simd simdlen(16) schedule(static) num_threads(kernel_team(count))
  for (int64_t i = 0; i < count; ++i) dx[i] = dy[i] * cpu::gelu_slope(cpu::bf16_value(x[i]));
}

struct AttentionDims {
  int64_t batch, steps, channels, heads, head_dim;
};

AttentionDims attention_dims(const Tensor& qkv, const KernelArgs& args, const char* kernel) {
  PR_CHECK_EQ(qkv.shape.rank(), 3) << kernel << " qkv " << qkv.shape;
  AttentionDims d{qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3, args.ints[0], 0};
  PR_CHECK(d.heads > 0 && qkv.shape[2] == 3 * d.channels && d.channels % d.heads == 0)
      << kernel << " qkv " << qkv.shape << " heads " << d.heads;
  d.head_dim = d.channels / d.heads;
  return d;
}

// Per-thread f32 scratch of at least `count` floats (kernels run on queue threads and
// their OpenMP teams; each keeps its own).
float* thread_scratch(int64_t count) {
  thread_local std::vector<float> scratch;
  if (static_cast<int64_t>(scratch.size()) < count) scratch.resize(static_cast<size_t>(count));
  return scratch.data();
}

void attention_forward_bf16_kernel(const KernelArgs& args) {
  const char* kName = "attention_forward_bf16";
  expect_kernel_args(args, 3, 0, 1, kName);
  const AttentionDims d = attention_dims(args.tensors[0], args, kName);
  const int64_t t = d.steps, c = d.channels, c3 = 3 * c, hd = d.head_dim;
  PR_CHECK(args.tensors[1].numel() == d.batch * t * c &&
           args.tensors[2].numel() == d.batch * d.heads * t * t)
      << kName << " out " << args.tensors[1].shape << ", probs " << args.tensors[2].shape;
  const BF16* qkv = bf16_data(args.tensors[0], kName, "qkv");  // (B, T, 3C)
  BF16* out = bf16_data(args.tensors[1], kName, "out");        // (B, T, C)
  BF16* probs = bf16_data(args.tensors[2], kName, "probs");    // (B, H, T, T)
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(static) num_threads(kernel_team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    // f32 scratch: q | k | v as (T, 3D), then p (T, T) and out (T, D).
    float* qkv32 = thread_scratch(t * 3 * hd + t * t + t * hd);
    float* p32 = qkv32 + t * 3 * hd;
    float* out32 = p32 + t * t;
    const BF16* q = qkv + b * t * c3 + h * hd;
    for (int part = 0; part < 3; ++part) {
      cpu::to_f32(q + part * c, c3, qkv32 + part * hd, 3 * hd, t, hd);
    }
    cpu::attention_head_forward(qkv32, qkv32 + hd, qkv32 + 2 * hd, 3 * hd, p32, out32, hd, t, hd,
                                scale);
    cpu::to_bf16(p32, t, probs + bh * t * t, t, t, t);
    cpu::to_bf16(out32, hd, out + b * t * c + h * hd, c, t, hd);
  }
}

void attention_backward_bf16_kernel(const KernelArgs& args) {
  const char* kName = "attention_backward_bf16";
  expect_kernel_args(args, 5, 0, 1, kName);
  const AttentionDims d = attention_dims(args.tensors[1], args, kName);
  const int64_t t = d.steps, c = d.channels, c3 = 3 * c, hd = d.head_dim;
  PR_CHECK(args.tensors[0].numel() == d.batch * t * c &&
           args.tensors[2].numel() == d.batch * d.heads * t * t &&
           args.tensors[3].numel() == d.batch * t * c3 &&
           args.tensors[4].numel() == d.batch * d.heads * t * t)
      << kName << " dout " << args.tensors[0].shape << ", dqkv " << args.tensors[3].shape;
  const float* dout = f32_data(args.tensors[0], kName, "dout");   // (B, T, C)
  const BF16* qkv = bf16_data(args.tensors[1], kName, "qkv");     // (B, T, 3C)
  const BF16* probs = bf16_data(args.tensors[2], kName, "probs");  // (B, H, T, T)
  float* dqkv = f32_data(args.tensors[3], kName, "dqkv");          // (B, T, 3C)
  float* scratch = f32_data(args.tensors[4], kName, "scratch");    // (B, H, T, T)
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for schedule(static) num_threads(kernel_team(d.batch * d.heads * t * t))
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const int64_t b = bh / d.heads, h = bh % d.heads;
    float* qkv32 = thread_scratch(t * 3 * hd + t * t);  // q | k | v (T, 3D), then p (T, T)
    float* p32 = qkv32 + t * 3 * hd;
    const int64_t head = b * t * c3 + h * hd;
    for (int part = 0; part < 3; ++part) {
      cpu::to_f32(qkv + head + part * c, c3, qkv32 + part * hd, 3 * hd, t, hd);
    }
    cpu::to_f32(probs + bh * t * t, t, p32, t, t, t);
    float* dq = dqkv + head;
    cpu::attention_head_backward(dout + b * t * c + h * hd, c, qkv32, qkv32 + hd, qkv32 + 2 * hd,
                                 3 * hd, p32, dq, dq + c, dq + 2 * c, c3, scratch + bh * t * t,
                                 t, hd, scale);
  }
}

}  // namespace

void add_bf16_kernels(std::vector<CpuKernel>* table) {
  table->insert(table->end(), {
                                  {"convert", convert_kernel},
                                  {"gemm_bf16", gemm_bf16_kernel},
                                  {"linear_bf16", linear_bf16_kernel},
                                  {"layernorm_forward_bf16", layernorm_forward_bf16_kernel},
                                  {"gelu_bf16", gelu_bf16_kernel},
                                  {"gelu_backward_bf16", gelu_backward_bf16_kernel},
                                  {"attention_forward_bf16", attention_forward_bf16_kernel},
                                  {"attention_backward_bf16", attention_backward_bf16_kernel},
                              });
}

}  // namespace petaring
