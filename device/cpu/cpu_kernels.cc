// Kernels of the cpu backend. Each reads its KernelArgs exactly as device/kernels.h
// documents; the typed launchers (device/kernels.cc) have already checked shapes, so the
// checks here are the cheap ones that keep a direct q.launch() from reading out of bounds.
#include "device/cpu/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "device/cpu/cpu_blas.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {

float* f32_data(const Tensor& tensor, const char* kernel, const char* role) {
  if (tensor.dtype != DType::kF32) {
    PR_FAIL(kUnimplemented, kernel, ": ", role, " is ", dtype_name(tensor.dtype),
            "; this kernel takes f32 (the bf16 ones are the *_bf16 kernels of device/kernels.h)");
  }
  return tensor.data<float>();
}

BF16* bf16_data(const Tensor& tensor, const char* kernel, const char* role) {
  if (tensor.dtype != DType::kBF16) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role, " must be bf16, got ",
            dtype_name(tensor.dtype));
  }
  return tensor.data<BF16>();
}

int kernel_team(int64_t work) { return work >= (int64_t{1} << 15) ? cpu::blas_threads() : 1; }

namespace {

const int32_t* label_data(const Tensor& labels, int64_t rows, const char* kernel) {
  if (labels.dtype != DType::kI32) {
    PR_FAIL(kInvalidArgument, kernel, ": labels must be i32, got ", dtype_name(labels.dtype));
  }
  PR_CHECK_EQ(labels.numel(), rows) << kernel << " labels";
  return labels.data<int32_t>();
}

void check_label(int32_t label, int64_t row, int64_t classes, const char* kernel) {
  if (label < 0 || label >= classes) {
    PR_FAIL(kInvalidArgument, kernel, ": label ", label, " in row ", row,
            " is out of range [0, ", classes,
            "); check the data set's labels against the model's output size");
  }
}

// x[0, count) = beta * x, where beta == 0 writes zeros whatever x held (even NaN).
void scale_or_zero(float* __restrict x, int64_t count, float beta) {
  if (beta == 0.0f) {
    std::fill(x, x + count, 0.0f);
  } else if (beta != 1.0f) {
    for (int64_t i = 0; i < count; ++i) x[i] *= beta;
  }
}

void gemm_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 3, 2, 2, "gemm");
  const Tensor& a = args.tensors[0];
  const Tensor& b = args.tensors[1];
  const Tensor& c = args.tensors[2];
  const bool trans_a = args.ints[0] != 0;
  const bool trans_b = args.ints[1] != 0;
  const float alpha = static_cast<float>(args.floats[0]);
  const float beta = static_cast<float>(args.floats[1]);
  PR_CHECK(a.shape.rank() == 2 && b.shape.rank() == 2 && c.shape.rank() == 2)
      << "gemm A " << a.shape << ", B " << b.shape << ", C " << c.shape;
  const int64_t m = c.shape[0], n = c.shape[1];
  const int64_t k = trans_a ? a.shape[0] : a.shape[1];
  PR_CHECK_EQ(trans_a ? a.shape[1] : a.shape[0], m) << "gemm rows of op(A)";
  PR_CHECK_EQ(trans_b ? b.shape[1] : b.shape[0], k) << "gemm rows of op(B)";
  PR_CHECK_EQ(trans_b ? b.shape[0] : b.shape[1], n) << "gemm columns of op(B)";
  const float* a_data = f32_data(a, "gemm", "A");
  const float* b_data = f32_data(b, "gemm", "B");
  float* c_data = f32_data(c, "gemm", "C");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta * C
    scale_or_zero(c_data, m * n, beta);
    return;
  }
  cpu::sgemm(trans_a, trans_b, m, n, k, alpha, a_data, a.shape[1], b_data, b.shape[1], beta,
             c_data, n);
}

void bias_add_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "bias_add");
  const Tensor& y = args.tensors[0];  // (B, N)
  const int64_t n = args.tensors[1].numel();
  PR_CHECK(n > 0 ? y.numel() % n == 0 : y.numel() == 0) << "bias_add Y " << y.shape << ", bias "
                                                        << args.tensors[1].shape;
  float* __restrict y_data = f32_data(y, "bias_add", "Y");
  const float* __restrict bias = f32_data(args.tensors[1], "bias_add", "bias");
  const int64_t rows = n > 0 ? y.numel() / n : 0;
  for (int64_t i = 0; i < rows; ++i) {
    float* __restrict row = y_data + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] += bias[j];
  }
}

void bias_grad_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 1, 0, "bias_grad");
  const Tensor& dy = args.tensors[0];  // (B, N)
  const int64_t n = args.tensors[1].numel();
  PR_CHECK(n > 0 ? dy.numel() % n == 0 : dy.numel() == 0)
      << "bias_grad dY " << dy.shape << ", dbias " << args.tensors[1].shape;
  const float* __restrict dy_data = f32_data(dy, "bias_grad", "dY");
  float* __restrict dbias = f32_data(args.tensors[1], "bias_grad", "dbias");
  scale_or_zero(dbias, n, static_cast<float>(args.floats[0]));
  const int64_t rows = n > 0 ? dy.numel() / n : 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict row = dy_data + i * n;
    for (int64_t j = 0; j < n; ++j) dbias[j] += row[j];
  }
}

void relu_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "relu");
  PR_CHECK_EQ(args.tensors[0].numel(), args.tensors[1].numel()) << "relu X and Y";
  const float* x = f32_data(args.tensors[0], "relu", "X");
  float* y = f32_data(args.tensors[1], "relu", "Y");  // may alias x
  const int64_t count = args.tensors[0].numel();
  for (int64_t i = 0; i < count; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN stays NaN
}

void relu_backward_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 3, 0, 0, "relu_backward");
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count)
      << "relu_backward Y, dY and dX sizes";
  const float* __restrict y = f32_data(args.tensors[0], "relu_backward", "Y");
  const float* dy = f32_data(args.tensors[1], "relu_backward", "dY");
  float* dx = f32_data(args.tensors[2], "relu_backward", "dX");  // may alias dy
  for (int64_t i = 0; i < count; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// One row: probs = softmax(x); returns -log(probs[label]) computed as
// log(sum) - (x[label] - max), which stays finite where probs[label] underflows.
double softmax_row(const float* __restrict x, float* __restrict probs, int64_t classes,
                   int32_t label) {
  float max = x[0];
  for (int64_t j = 1; j < classes; ++j) max = std::max(max, x[j]);
  float sum = 0.0f;
  // TODO(perf): a vectorized exp; rows are short (classes) next to the GEMMs around them.
  for (int64_t j = 0; j < classes; ++j) {
    probs[j] = std::exp(x[j] - max);
    sum += probs[j];
  }
  const float inverse = 1.0f / sum;
  for (int64_t j = 0; j < classes; ++j) probs[j] *= inverse;
  return std::log(static_cast<double>(sum)) - static_cast<double>(x[label] - max);
}

void softmax_xent_forward_kernel(const KernelArgs& args) {
  const char* kName = "softmax_xent_forward";
  expect_kernel_args(args, 4, 0, 0, kName);
  const Tensor& logits = args.tensors[0];  // (B, C)
  PR_CHECK_EQ(logits.shape.rank(), 2) << kName << " logits " << logits.shape;
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  PR_CHECK(classes > 0 || rows == 0) << kName << " logits " << logits.shape;
  PR_CHECK(args.tensors[2].numel() == logits.numel() && args.tensors[3].numel() == 1)
      << kName << " probs " << args.tensors[2].shape << ", loss " << args.tensors[3].shape;
  const float* x = f32_data(logits, kName, "logits");
  const int32_t* labels = label_data(args.tensors[1], rows, kName);
  float* probs = f32_data(args.tensors[2], kName, "probs");
  float* loss = f32_data(args.tensors[3], kName, "loss");
  double total = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    check_label(labels[i], i, classes, kName);
    total += softmax_row(x + i * classes, probs + i * classes, classes, labels[i]);
  }
  loss[0] = rows > 0 ? static_cast<float>(total / static_cast<double>(rows)) : 0.0f;
}

void softmax_xent_backward_kernel(const KernelArgs& args) {
  const char* kName = "softmax_xent_backward";
  expect_kernel_args(args, 3, 1, 0, kName);
  const Tensor& probs_tensor = args.tensors[0];  // (B, C)
  PR_CHECK_EQ(probs_tensor.shape.rank(), 2) << kName << " probs " << probs_tensor.shape;
  const int64_t rows = probs_tensor.shape[0], classes = probs_tensor.shape[1];
  PR_CHECK(classes > 0 || rows == 0) << kName << " probs " << probs_tensor.shape;
  PR_CHECK_EQ(args.tensors[2].numel(), probs_tensor.numel()) << kName << " dlogits";
  const float* probs = f32_data(probs_tensor, kName, "probs");
  const int32_t* labels = label_data(args.tensors[1], rows, kName);
  float* dlogits = f32_data(args.tensors[2], kName, "dlogits");
  const float scale = static_cast<float>(args.floats[0]);
  for (int64_t i = 0; i < rows; ++i) {
    check_label(labels[i], i, classes, kName);
    const float* p = probs + i * classes;
    float* d = dlogits + i * classes;
    const float at_label = p[labels[i]];  // read before a possibly aliased write
    for (int64_t j = 0; j < classes; ++j) d[j] = p[j] * scale;
    d[labels[i]] = (at_label - 1.0f) * scale;
  }
}

template <bool kNesterov, bool kWeightDecay>
void sgd_loop(float* __restrict param, const float* __restrict grad, float* __restrict velocity,
              int64_t count, float lr, float momentum, float weight_decay) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = kWeightDecay ? grad[i] + weight_decay * param[i] : grad[i];
    const float v = momentum * velocity[i] + g;
    velocity[i] = v;
    param[i] -= lr * (kNesterov ? g + momentum * v : v);
  }
}

void sgd_momentum_kernel(const KernelArgs& args) {
  const char* kName = "sgd_momentum";
  expect_kernel_args(args, 3, 3, 1, kName);
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count)
      << kName << " param, grad and velocity sizes";
  float* param = f32_data(args.tensors[0], kName, "param");
  const float* grad = f32_data(args.tensors[1], kName, "grad");
  float* velocity = f32_data(args.tensors[2], kName, "velocity");
  const float lr = static_cast<float>(args.floats[0]);
  const float momentum = static_cast<float>(args.floats[1]);
  const float decay = static_cast<float>(args.floats[2]);
  const bool nesterov = args.ints[0] != 0;
  // PyTorch adds weight_decay * param only when weight_decay != 0 (an inf param stays inf).
  if (nesterov) {
    decay != 0.0f ? sgd_loop<true, true>(param, grad, velocity, count, lr, momentum, decay)
                  : sgd_loop<true, false>(param, grad, velocity, count, lr, momentum, decay);
  } else {
    decay != 0.0f ? sgd_loop<false, true>(param, grad, velocity, count, lr, momentum, decay)
                  : sgd_loop<false, false>(param, grad, velocity, count, lr, momentum, decay);
  }
}

void adamw_kernel(const KernelArgs& args) {
  const char* kName = "adamw";
  expect_kernel_args(args, 4, 5, 1, kName);
  const int64_t count = args.tensors[0].numel();
  PR_CHECK(args.tensors[1].numel() == count && args.tensors[2].numel() == count &&
           args.tensors[3].numel() == count)
      << kName << " param, grad, m and v sizes";
  PR_CHECK_GE(args.ints[0], 1) << kName << " step t";
  float* __restrict param = f32_data(args.tensors[0], kName, "param");
  const float* __restrict grad = f32_data(args.tensors[1], kName, "grad");
  float* __restrict m = f32_data(args.tensors[2], kName, "m");
  float* __restrict v = f32_data(args.tensors[3], kName, "v");
  const double lr = args.floats[0];
  const float beta1 = static_cast<float>(args.floats[1]);
  const float beta2 = static_cast<float>(args.floats[2]);
  const float eps = static_cast<float>(args.floats[3]);
  const double t = static_cast<double>(args.ints[0]);
  // Per-step scalars in double, as PyTorch computes them on the host.
  const float keep = static_cast<float>(1.0 - lr * args.floats[4]);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(args.floats[1], t)));
  const float c2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(args.floats[2], t)));
  for (int64_t i = 0; i < count; ++i) {
    const float g = grad[i];
    const float p = param[i] * keep;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - step_size * (mi / (std::sqrt(vi) / c2_sqrt + eps));
  }
}

void sum_squares_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "sum_squares");
  PR_CHECK_EQ(args.tensors[1].numel(), 1) << "sum_squares out";
  const float* __restrict x = f32_data(args.tensors[0], "sum_squares", "X");
  float* out = f32_data(args.tensors[1], "sum_squares", "out");
  const int64_t count = args.tensors[0].numel();
  // Four double accumulators: exact for every f32 square, and independent chains.
  double sums[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    for (int k = 0; k < 4; ++k) sums[k] += double(x[i + k]) * double(x[i + k]);
  }
  for (; i < count; ++i) sums[0] += double(x[i]) * double(x[i]);
  out[0] = static_cast<float>((sums[0] + sums[1]) + (sums[2] + sums[3]));
}

void fill_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 1, 1, 0, "fill");
  float* x = f32_data(args.tensors[0], "fill", "X");
  std::fill(x, x + args.tensors[0].numel(), static_cast<float>(args.floats[0]));
}

// A byte copy: any dtype, as long as X and Y agree. Overlapping views are allowed.
void copy_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 2, 0, 0, "copy");
  const Tensor& x = args.tensors[0];
  const Tensor& y = args.tensors[1];
  PR_CHECK(x.dtype == y.dtype && x.numel() == y.numel())
      << "copy X " << x.shape << " " << dtype_name(x.dtype) << " to Y " << y.shape << " "
      << dtype_name(y.dtype);
  if (x.bytes() == 0) return;
  char* x_base = static_cast<char*>(x.buffer->host_data());
  char* y_base = static_cast<char*>(y.buffer->host_data());
  PR_CHECK(x_base != nullptr && y_base != nullptr) << "copy needs host-visible buffers";
  std::memmove(y_base + y.offset, x_base + x.offset, x.bytes());
}

void scale_kernel(const KernelArgs& args) {
  expect_kernel_args(args, 1, 1, 0, "scale");
  float* x = f32_data(args.tensors[0], "scale", "X");
  const float alpha = static_cast<float>(args.floats[0]);
  const int64_t count = args.tensors[0].numel();
  for (int64_t i = 0; i < count; ++i) x[i] *= alpha;
}

}  // namespace

std::vector<CpuKernel> make_cpu_kernels() {
  std::vector<CpuKernel> table{
      {"gemm", gemm_kernel},
      {"bias_add", bias_add_kernel},
      {"bias_grad", bias_grad_kernel},
      {"relu", relu_kernel},
      {"relu_backward", relu_backward_kernel},
      {"softmax_xent_forward", softmax_xent_forward_kernel},
      {"softmax_xent_backward", softmax_xent_backward_kernel},
      {"sgd_momentum", sgd_momentum_kernel},
      {"adamw", adamw_kernel},
      {"sum_squares", sum_squares_kernel},
      {"fill", fill_kernel},
      {"copy", copy_kernel},
      {"scale", scale_kernel},
  };
  add_transformer_kernels(&table);
  add_bf16_kernels(&table);
  return table;
}

}  // namespace petaring
