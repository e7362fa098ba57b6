// Typed launchers: host-side validation, then an asynchronous launch of the device's
// kernel of that name. Every message starts with the kernel's name and shows the shapes.
#include "device/kernels.h"

#include <string>
#include <string_view>
#include <utility>

#include "runtime/error.h"

namespace petaring::kernels {
namespace {

void launch(Queue& q, std::string_view name, KernelArgs args) {
  const Kernel* kernel = q.device().find_kernel(name);
  if (kernel == nullptr) {
    std::string offered;
    for (const std::string& other : q.device().kernel_names()) {
      offered += offered.empty() ? other : ", " + other;
    }
    PR_FAIL(kUnimplemented, "device ", q.device().name(), " (", q.device().properties().kind,
            " backend) has no kernel '", name, "'; it offers: ", offered,
            ". Run this model on a backend that has it (e.g. cpu)");
  }
  q.launch(*kernel, std::move(args));
}

void expect_buffer(const char* kernel, const char* role, const Tensor& t) {
  if (t.buffer == nullptr) PR_FAIL(kInvalidArgument, kernel, ": ", role, " has no buffer");
}

// f32 is what the f32 kernels' float tensors must be. bf16/f16 are refused with
// kUnimplemented: bf16 data goes to the *_bf16 kernels; f16 has none yet.
void expect_f32(const char* kernel, const char* role, const Tensor& t) {
  expect_buffer(kernel, role, t);
  if (t.dtype == DType::kF32) return;
  if (t.dtype == DType::kBF16 || t.dtype == DType::kF16) {
    PR_FAIL(kUnimplemented, kernel, ": ", role, " ", t.shape, " is ", dtype_name(t.dtype),
            "; this kernel takes f32: keep this tensor in f32 or use the kernel's bf16 variant "
            "(device/kernels.h, mixed precision) where there is one");
  }
  PR_FAIL(kInvalidArgument, kernel, ": ", role, " ", t.shape, " must be f32, got ",
          dtype_name(t.dtype));
}

// Exactly `dtype` (the mixed-precision kernels name the dtype of every tensor).
void expect_dtype(const char* kernel, const char* role, const Tensor& t, DType dtype) {
  expect_buffer(kernel, role, t);
  if (t.dtype != dtype) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role, " ", t.shape, " must be ", dtype_name(dtype),
            ", got ", dtype_name(t.dtype));
  }
}

// `dtype` as the f32 kernels and their bf16 twins check it: expect_f32 (with its hint
// towards the bf16 variant) for f32, exactly `dtype` otherwise.
void expect_float(const char* kernel, const char* role, const Tensor& t, DType dtype) {
  if (dtype == DType::kF32) {
    expect_f32(kernel, role, t);
  } else {
    expect_dtype(kernel, role, t, dtype);
  }
}

void expect_rank(const char* kernel, const char* role, const Tensor& t, int rank) {
  if (t.shape.rank() != rank) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role, " must have ", rank, " dimension(s), got ",
            t.shape);
  }
}

void expect_same_shape(const char* kernel, const char* role_a, const Tensor& a,
                       const char* role_b, const Tensor& b) {
  if (a.shape != b.shape) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role_a, " ", a.shape, " and ", role_b, " ", b.shape,
            " must have the same shape");
  }
}

// Outputs may not alias inputs (unless a kernel's contract says so).
void expect_disjoint(const char* kernel, const char* role_a, const Tensor& a,
                     const char* role_b, const Tensor& b) {
  if (a.buffer != b.buffer || a.bytes() == 0 || b.bytes() == 0) return;
  if (a.offset < b.offset + b.bytes() && b.offset < a.offset + a.bytes()) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role_a, " ", a.shape, " at byte ", a.offset,
            " overlaps ", role_b, " ", b.shape, " at byte ", b.offset,
            " in the same buffer; use separate memory for outputs");
  }
}

void expect_labels(const char* kernel, const Tensor& labels, int64_t rows) {
  expect_buffer(kernel, "labels", labels);
  if (labels.dtype != DType::kI32) {
    PR_FAIL(kInvalidArgument, kernel, ": labels ", labels.shape, " must be i32, got ",
            dtype_name(labels.dtype));
  }
  if (labels.shape.rank() != 1 || labels.shape[0] != rows) {
    PR_FAIL(kInvalidArgument, kernel, ": labels ", labels.shape, " must be (", rows,
            "), one per row");
  }
}

// Shape of op(X) for a (rows, cols) matrix X.
std::string op_shape(const Tensor& x, bool trans) {
  return Shape{trans ? x.shape[1] : x.shape[0], trans ? x.shape[0] : x.shape[1]}.to_string();
}

}  // namespace

namespace {

// gemm and gemm_bf16: A and B in `in` (f32 or bf16), C always f32.
void checked_gemm(Queue& q, const char* kName, DType in, bool trans_a, bool trans_b, float alpha,
                  Tensor a, Tensor b, float beta, Tensor c) {
  expect_float(kName, "A", a, in);
  expect_float(kName, "B", b, in);
  expect_f32(kName, "C", c);
  expect_rank(kName, "A", a, 2);
  expect_rank(kName, "B", b, 2);
  expect_rank(kName, "C", c, 2);
  const int64_t m = trans_a ? a.shape[1] : a.shape[0];
  const int64_t k = trans_a ? a.shape[0] : a.shape[1];
  const int64_t k_b = trans_b ? b.shape[1] : b.shape[0];
  const int64_t n = trans_b ? b.shape[0] : b.shape[1];
  if (k != k_b || c.shape[0] != m || c.shape[1] != n) {
    PR_FAIL(kInvalidArgument, kName, ": op(A) ", op_shape(a, trans_a), " (A ", a.shape,
            trans_a ? " transposed" : "", ") @ op(B) ", op_shape(b, trans_b), " (B ", b.shape,
            trans_b ? " transposed" : "", ") into C ", c.shape,
            ": need op(A) (M, K), op(B) (K, N), C (M, N)");
  }
  expect_disjoint(kName, "C", c, "A", a);
  expect_disjoint(kName, "C", c, "B", b);
  launch(q, kName, KernelArgs{{a, b, c}, {alpha, beta}, {trans_a ? 1 : 0, trans_b ? 1 : 0}});
}

}  // namespace

void gemm(Queue& q, bool trans_a, bool trans_b, float alpha, Tensor a, Tensor b, float beta,
          Tensor c) {
  checked_gemm(q, "gemm", DType::kF32, trans_a, trans_b, alpha, a, b, beta, c);
}

// `vector` must be f32 (N) for the f32 matrix (B, N) named `matrix_role`.
void expect_row_vector(const char* kernel, const char* role, const Tensor& vector,
                       const char* matrix_role, const Tensor& matrix) {
  expect_f32(kernel, matrix_role, matrix);
  expect_f32(kernel, role, vector);
  expect_rank(kernel, matrix_role, matrix, 2);
  if (vector.shape.rank() != 1 || vector.shape[0] != matrix.shape[1]) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role, " ", vector.shape, " must be (",
            matrix.shape[1], ") to match ", matrix_role, " ", matrix.shape);
  }
  expect_disjoint(kernel, matrix_role, matrix, role, vector);
}

void bias_add(Queue& q, Tensor y, Tensor bias) {
  const char* kName = "bias_add";
  expect_row_vector(kName, "bias", bias, "Y", y);
  launch(q, kName, KernelArgs{{y, bias}, {}, {}});
}

void bias_grad(Queue& q, Tensor dy, Tensor dbias, float beta) {
  const char* kName = "bias_grad";
  expect_row_vector(kName, "dbias", dbias, "dY", dy);
  launch(q, kName, KernelArgs{{dy, dbias}, {beta}, {}});
}

void relu(Queue& q, Tensor x, Tensor y) {
  const char* kName = "relu";
  expect_f32(kName, "X", x);
  expect_f32(kName, "Y", y);
  expect_same_shape(kName, "X", x, "Y", y);
  // Y may alias X, but only exactly: a shifted overlap would read outputs as inputs.
  if (!(x.buffer == y.buffer && x.offset == y.offset)) expect_disjoint(kName, "Y", y, "X", x);
  launch(q, kName, KernelArgs{{x, y}, {}, {}});
}

void relu_backward(Queue& q, Tensor y, Tensor dy, Tensor dx) {
  const char* kName = "relu_backward";
  expect_f32(kName, "Y", y);
  expect_f32(kName, "dY", dy);
  expect_f32(kName, "dX", dx);
  expect_same_shape(kName, "Y", y, "dY", dy);
  expect_same_shape(kName, "dY", dy, "dX", dx);
  expect_disjoint(kName, "dX", dx, "Y", y);
  if (!(dx.buffer == dy.buffer && dx.offset == dy.offset)) {
    expect_disjoint(kName, "dX", dx, "dY", dy);
  }
  launch(q, kName, KernelArgs{{y, dy, dx}, {}, {}});
}

void softmax_xent_forward(Queue& q, Tensor logits, Tensor labels, Tensor probs, Tensor loss) {
  const char* kName = "softmax_xent_forward";
  expect_f32(kName, "logits", logits);
  expect_f32(kName, "probs", probs);
  expect_f32(kName, "loss", loss);
  expect_rank(kName, "logits", logits, 2);
  if (logits.shape[1] < 1) {
    PR_FAIL(kInvalidArgument, kName, ": logits ", logits.shape, " must have at least one class");
  }
  expect_labels(kName, labels, logits.shape[0]);
  expect_same_shape(kName, "logits", logits, "probs", probs);
  if (loss.numel() != 1) PR_FAIL(kInvalidArgument, kName, ": loss ", loss.shape, " must be (1)");
  expect_disjoint(kName, "probs", probs, "logits", logits);
  expect_disjoint(kName, "loss", loss, "logits", logits);
  expect_disjoint(kName, "loss", loss, "probs", probs);
  launch(q, kName, KernelArgs{{logits, labels, probs, loss}, {}, {}});
}

void softmax_xent_backward(Queue& q, Tensor probs, Tensor labels, Tensor dlogits, float scale) {
  const char* kName = "softmax_xent_backward";
  expect_f32(kName, "probs", probs);
  expect_f32(kName, "dlogits", dlogits);
  expect_rank(kName, "probs", probs, 2);
  expect_labels(kName, labels, probs.shape[0]);
  expect_same_shape(kName, "probs", probs, "dlogits", dlogits);
  expect_disjoint(kName, "dlogits", dlogits, "probs", probs);
  launch(q, kName, KernelArgs{{probs, labels, dlogits}, {scale}, {}});
}

void sgd_momentum(Queue& q, Tensor param, Tensor grad, Tensor velocity, float lr, float momentum,
                  float weight_decay, bool nesterov) {
  const char* kName = "sgd_momentum";
  expect_f32(kName, "param", param);
  expect_f32(kName, "grad", grad);
  expect_f32(kName, "velocity", velocity);
  expect_same_shape(kName, "param", param, "grad", grad);
  expect_same_shape(kName, "param", param, "velocity", velocity);
  expect_disjoint(kName, "param", param, "grad", grad);
  expect_disjoint(kName, "param", param, "velocity", velocity);
  expect_disjoint(kName, "velocity", velocity, "grad", grad);
  launch(q, kName,
         KernelArgs{{param, grad, velocity}, {lr, momentum, weight_decay}, {nesterov ? 1 : 0}});
}

void adamw(Queue& q, Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t t) {
  const char* kName = "adamw";
  expect_f32(kName, "param", param);
  expect_f32(kName, "grad", grad);
  expect_f32(kName, "m", m);
  expect_f32(kName, "v", v);
  expect_same_shape(kName, "param", param, "grad", grad);
  expect_same_shape(kName, "param", param, "m", m);
  expect_same_shape(kName, "param", param, "v", v);
  expect_disjoint(kName, "param", param, "grad", grad);
  expect_disjoint(kName, "param", param, "m", m);
  expect_disjoint(kName, "param", param, "v", v);
  expect_disjoint(kName, "m", m, "grad", grad);
  expect_disjoint(kName, "v", v, "grad", grad);
  expect_disjoint(kName, "m", m, "v", v);
  if (t < 1) {
    PR_FAIL(kInvalidArgument, kName, ": step t is ", t,
            "; it counts updates from 1 (bias correction divides by 1 - beta^t)");
  }
  launch(q, kName,
         KernelArgs{{param, grad, m, v}, {lr, beta1, beta2, eps, weight_decay}, {t}});
}

void sum_squares(Queue& q, Tensor x, Tensor out) {
  const char* kName = "sum_squares";
  expect_f32(kName, "X", x);
  expect_f32(kName, "out", out);
  if (out.numel() != 1) PR_FAIL(kInvalidArgument, kName, ": out ", out.shape, " must be (1)");
  expect_disjoint(kName, "out", out, "X", x);
  launch(q, kName, KernelArgs{{x, out}, {}, {}});
}

void fill(Queue& q, Tensor x, float value) {
  expect_f32("fill", "X", x);
  launch(q, "fill", KernelArgs{{x}, {value}, {}});
}

void copy(Queue& q, Tensor x, Tensor y) {
  const char* kName = "copy";
  expect_f32(kName, "X", x);
  expect_f32(kName, "Y", y);
  if (x.numel() != y.numel()) {
    PR_FAIL(kInvalidArgument, kName, ": X ", x.shape, " and Y ", y.shape,
            " must have the same number of elements");
  }
  launch(q, kName, KernelArgs{{x, y}, {}, {}});
}

void scale(Queue& q, Tensor x, float alpha) {
  expect_f32("scale", "X", x);
  launch(q, "scale", KernelArgs{{x}, {alpha}, {}});
}

// ---- Transformer kernels ----------------------------------------------------------

namespace {

void expect_tokens(const char* kernel, const Tensor& tokens) {
  expect_buffer(kernel, "tokens", tokens);
  if (tokens.dtype != DType::kI32 || tokens.shape.rank() != 2) {
    PR_FAIL(kInvalidArgument, kernel, ": tokens ", tokens.shape, " ", dtype_name(tokens.dtype),
            " must be i32 (B, T)");
  }
}

void expect_shape(const char* kernel, const char* role, const Tensor& t, const Shape& want) {
  if (t.shape != want) {
    PR_FAIL(kInvalidArgument, kernel, ": ", role, " is ", t.shape, ", expected ", want);
  }
}

// Exact aliasing is allowed where a contract says so; partial overlap never is.
void expect_disjoint_or_same(const char* kernel, const char* role_a, const Tensor& a,
                             const char* role_b, const Tensor& b) {
  if (a.buffer == b.buffer && a.offset == b.offset) return;
  expect_disjoint(kernel, role_a, a, role_b, b);
}

// Checks the (B, T, 3C) packed projections against `heads`; returns {B, T, C}.
Shape expect_qkv(const char* kernel, const Tensor& qkv, int64_t heads,
                 DType dtype = DType::kF32) {
  expect_dtype(kernel, "qkv", qkv, dtype);
  expect_rank(kernel, "qkv", qkv, 3);
  const int64_t c3 = qkv.shape[2];
  if (heads < 1 || c3 % 3 != 0 || (c3 / 3) % heads != 0) {
    PR_FAIL(kInvalidArgument, kernel, ": qkv ", qkv.shape, " must be (B, T, 3C) with C a multiple"
            " of heads (", heads, ")");
  }
  return Shape{qkv.shape[0], qkv.shape[1], c3 / 3};
}

}  // namespace

void embedding_forward(Queue& q, Tensor tokens, Tensor wte, Tensor wpe, Tensor out) {
  const char* kName = "embedding_forward";
  expect_tokens(kName, tokens);
  expect_f32(kName, "wte", wte);
  expect_f32(kName, "wpe", wpe);
  expect_f32(kName, "out", out);
  expect_rank(kName, "wte", wte, 2);
  expect_rank(kName, "wpe", wpe, 2);
  const int64_t b = tokens.shape[0], t = tokens.shape[1], c = wte.shape[1];
  if (wpe.shape[1] != c || wpe.shape[0] < t) {
    PR_FAIL(kInvalidArgument, kName, ": wpe ", wpe.shape, " must be (P >= ", t, ", ", c,
            ") for tokens ", tokens.shape, " and wte ", wte.shape);
  }
  expect_shape(kName, "out", out, Shape{b, t, c});
  expect_disjoint(kName, "out", out, "wte", wte);
  expect_disjoint(kName, "out", out, "wpe", wpe);
  launch(q, kName, KernelArgs{{tokens, wte, wpe, out}, {}, {}});
}

void embedding_backward(Queue& q, Tensor dout, Tensor tokens, Tensor dwte, Tensor dwpe,
                        float beta_wte, float beta_wpe) {
  const char* kName = "embedding_backward";
  expect_tokens(kName, tokens);
  expect_f32(kName, "dout", dout);
  expect_f32(kName, "dwte", dwte);
  expect_f32(kName, "dwpe", dwpe);
  expect_rank(kName, "dwte", dwte, 2);
  expect_rank(kName, "dwpe", dwpe, 2);
  const int64_t b = tokens.shape[0], t = tokens.shape[1], c = dwte.shape[1];
  expect_shape(kName, "dout", dout, Shape{b, t, c});
  if (dwpe.shape[1] != c || dwpe.shape[0] < t) {
    PR_FAIL(kInvalidArgument, kName, ": dwpe ", dwpe.shape, " must be (P >= ", t, ", ", c, ")");
  }
  expect_disjoint(kName, "dwte", dwte, "dout", dout);
  expect_disjoint(kName, "dwpe", dwpe, "dout", dout);
  expect_disjoint(kName, "dwte", dwte, "dwpe", dwpe);
  launch(q, kName, KernelArgs{{dout, tokens, dwte, dwpe}, {beta_wte, beta_wpe}, {}});
}


namespace {

// The f32 kernels below and their bf16 twins (further down) check the same shapes and
// aliasing; `dt` is the dtype of the tensors that the bf16 twin keeps in bf16.

void checked_layernorm_forward(Queue& q, const char* kName, DType dt, Tensor x, Tensor weight,
                               Tensor bias, Tensor y, Tensor mean, Tensor rstd, float eps) {
  expect_row_vector(kName, "weight", weight, "X", x);
  expect_row_vector(kName, "bias", bias, "X", x);
  expect_float(kName, "Y", y, dt);
  expect_f32(kName, "mean", mean);
  expect_f32(kName, "rstd", rstd);
  expect_same_shape(kName, "X", x, "Y", y);
  expect_shape(kName, "mean", mean, Shape{x.shape[0]});
  expect_shape(kName, "rstd", rstd, Shape{x.shape[0]});
  expect_disjoint(kName, "Y", y, "X", x);
  expect_disjoint(kName, "mean", mean, "rstd", rstd);
  if (!(eps > 0.0f)) PR_FAIL(kInvalidArgument, kName, ": eps must be > 0, got ", eps);
  launch(q, kName, KernelArgs{{x, weight, bias, y, mean, rstd}, {eps}, {}});
}

void checked_gelu(Queue& q, const char* kName, DType dt, Tensor x, Tensor y) {
  expect_float(kName, "X", x, dt);
  expect_float(kName, "Y", y, dt);
  expect_same_shape(kName, "X", x, "Y", y);
  expect_disjoint_or_same(kName, "Y", y, "X", x);
  launch(q, kName, KernelArgs{{x, y}, {}, {}});
}

void checked_gelu_backward(Queue& q, const char* kName, DType dt, Tensor x, Tensor dy, Tensor dx) {
  expect_float(kName, "X", x, dt);
  expect_f32(kName, "dY", dy);
  expect_f32(kName, "dX", dx);
  expect_same_shape(kName, "X", x, "dY", dy);
  expect_same_shape(kName, "dY", dy, "dX", dx);
  expect_disjoint(kName, "dX", dx, "X", x);
  expect_disjoint_or_same(kName, "dX", dx, "dY", dy);
  launch(q, kName, KernelArgs{{x, dy, dx}, {}, {}});
}

void checked_attention_forward(Queue& q, const char* kName, DType dt, Tensor qkv, Tensor out,
                               Tensor probs, int64_t heads) {
  const Shape btc = expect_qkv(kName, qkv, heads, dt);
  expect_float(kName, "out", out, dt);
  expect_float(kName, "probs", probs, dt);
  expect_shape(kName, "out", out, btc);
  expect_shape(kName, "probs", probs, Shape{btc[0], heads, btc[1], btc[1]});
  expect_disjoint(kName, "out", out, "qkv", qkv);
  expect_disjoint(kName, "probs", probs, "qkv", qkv);
  expect_disjoint(kName, "probs", probs, "out", out);
  launch(q, kName, KernelArgs{{qkv, out, probs}, {}, {heads}});
}

void checked_attention_backward(Queue& q, const char* kName, DType dt, Tensor dout, Tensor qkv,
                                Tensor probs, Tensor dqkv, Tensor scratch, int64_t heads) {
  const Shape btc = expect_qkv(kName, qkv, heads, dt);
  const Shape bhtt{btc[0], heads, btc[1], btc[1]};
  expect_f32(kName, "dout", dout);
  expect_float(kName, "probs", probs, dt);
  expect_f32(kName, "dqkv", dqkv);
  expect_f32(kName, "scratch", scratch);
  expect_shape(kName, "dout", dout, btc);
  expect_shape(kName, "probs", probs, bhtt);
  expect_shape(kName, "dqkv", dqkv, qkv.shape);
  expect_shape(kName, "scratch", scratch, bhtt);
  expect_disjoint(kName, "dqkv", dqkv, "dout", dout);
  expect_disjoint(kName, "dqkv", dqkv, "qkv", qkv);
  expect_disjoint(kName, "dqkv", dqkv, "probs", probs);
  expect_disjoint(kName, "scratch", scratch, "dqkv", dqkv);
  expect_disjoint(kName, "scratch", scratch, "probs", probs);
  expect_disjoint(kName, "scratch", scratch, "dout", dout);
  expect_disjoint(kName, "scratch", scratch, "qkv", qkv);
  launch(q, kName, KernelArgs{{dout, qkv, probs, dqkv, scratch}, {}, {heads}});
}

}  // namespace

void layernorm_forward(Queue& q, Tensor x, Tensor weight, Tensor bias, Tensor y, Tensor mean,
                       Tensor rstd, float eps) {
  checked_layernorm_forward(q, "layernorm_forward", DType::kF32, x, weight, bias, y, mean, rstd,
                            eps);
}

void layernorm_backward(Queue& q, Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
                        Tensor dx, Tensor dweight, Tensor dbias, float dx_beta, float param_beta) {
  const char* kName = "layernorm_backward";
  expect_row_vector(kName, "weight", weight, "X", x);
  expect_row_vector(kName, "dweight", dweight, "X", x);
  expect_row_vector(kName, "dbias", dbias, "X", x);
  expect_f32(kName, "dY", dy);
  expect_f32(kName, "dX", dx);
  expect_f32(kName, "mean", mean);
  expect_f32(kName, "rstd", rstd);
  expect_same_shape(kName, "X", x, "dY", dy);
  expect_same_shape(kName, "X", x, "dX", dx);
  expect_shape(kName, "mean", mean, Shape{x.shape[0]});
  expect_shape(kName, "rstd", rstd, Shape{x.shape[0]});
  expect_disjoint(kName, "dX", dx, "dY", dy);
  expect_disjoint(kName, "dX", dx, "X", x);
  expect_disjoint(kName, "dweight", dweight, "dbias", dbias);
  launch(q, kName, KernelArgs{{dy, x, weight, mean, rstd, dx, dweight, dbias},
                              {dx_beta, param_beta}, {}});
}

void gelu(Queue& q, Tensor x, Tensor y) {
  checked_gelu(q, "gelu", DType::kF32, x, y);
}

void gelu_backward(Queue& q, Tensor x, Tensor dy, Tensor dx) {
  checked_gelu_backward(q, "gelu_backward", DType::kF32, x, dy, dx);
}

void add(Queue& q, Tensor x, Tensor y, Tensor z) {
  const char* kName = "add";
  expect_f32(kName, "X", x);
  expect_f32(kName, "Y", y);
  expect_f32(kName, "Z", z);
  expect_same_shape(kName, "X", x, "Y", y);
  expect_same_shape(kName, "X", x, "Z", z);
  expect_disjoint_or_same(kName, "Z", z, "X", x);
  expect_disjoint_or_same(kName, "Z", z, "Y", y);
  launch(q, kName, KernelArgs{{x, y, z}, {}, {}});
}

void attention_forward(Queue& q, Tensor qkv, Tensor out, Tensor probs, int64_t heads) {
  checked_attention_forward(q, "attention_forward", DType::kF32, qkv, out, probs, heads);
}

void attention_backward(Queue& q, Tensor dout, Tensor qkv, Tensor probs, Tensor dqkv,
                        Tensor scratch, int64_t heads) {
  checked_attention_backward(q, "attention_backward", DType::kF32, dout, qkv, probs, dqkv, scratch,
                             heads);
}

// ---- Mixed precision -------------------------------------------------------------------

void convert(Queue& q, Tensor x, Tensor y) {
  const char* kName = "convert";
  expect_buffer(kName, "X", x);
  expect_buffer(kName, "Y", y);
  for (const auto& [role, t] : {std::pair<const char*, const Tensor*>{"X", &x}, {"Y", &y}}) {
    if (t->dtype != DType::kF32 && t->dtype != DType::kBF16) {
      PR_FAIL(kInvalidArgument, kName, ": ", role, " ", t->shape, " must be f32 or bf16, got ",
              dtype_name(t->dtype));
    }
  }
  if (x.numel() != y.numel()) {
    PR_FAIL(kInvalidArgument, kName, ": X ", x.shape, " and Y ", y.shape,
            " must have the same number of elements");
  }
  expect_disjoint(kName, "Y", y, "X", x);
  launch(q, kName, KernelArgs{{x, y}, {}, {}});
}

void gemm_bf16(Queue& q, bool trans_a, bool trans_b, float alpha, Tensor a, Tensor b, float beta,
               Tensor c) {
  checked_gemm(q, "gemm_bf16", DType::kBF16, trans_a, trans_b, alpha, a, b, beta, c);
}

void linear_bf16(Queue& q, Tensor x, Tensor w, Tensor bias, Tensor y) {
  const char* kName = "linear_bf16";
  expect_dtype(kName, "X", x, DType::kBF16);
  expect_dtype(kName, "W", w, DType::kBF16);
  expect_dtype(kName, "bias", bias, DType::kF32);
  expect_buffer(kName, "Y", y);
  if (y.dtype != DType::kF32 && y.dtype != DType::kBF16) {
    PR_FAIL(kInvalidArgument, kName, ": Y ", y.shape, " must be f32 or bf16, got ",
            dtype_name(y.dtype));
  }
  expect_rank(kName, "X", x, 2);
  expect_rank(kName, "W", w, 2);
  expect_rank(kName, "Y", y, 2);
  if (w.shape[1] != x.shape[1] || y.shape != Shape{x.shape[0], w.shape[0]} ||
      bias.shape != Shape{w.shape[0]}) {
    PR_FAIL(kInvalidArgument, kName, ": X ", x.shape, " @ W^T (W ", w.shape, ") + bias ",
            bias.shape, " into Y ", y.shape, ": need X (N, I), W (O, I), bias (O), Y (N, O)");
  }
  expect_disjoint(kName, "Y", y, "X", x);
  expect_disjoint(kName, "Y", y, "W", w);
  expect_disjoint(kName, "Y", y, "bias", bias);
  launch(q, kName, KernelArgs{{x, w, bias, y}, {}, {}});
}

void layernorm_forward_bf16(Queue& q, Tensor x, Tensor weight, Tensor bias, Tensor y, Tensor mean,
                            Tensor rstd, float eps) {
  checked_layernorm_forward(q, "layernorm_forward_bf16", DType::kBF16, x, weight, bias, y, mean,
                            rstd, eps);
}

void gelu_bf16(Queue& q, Tensor x, Tensor y) {
  checked_gelu(q, "gelu_bf16", DType::kBF16, x, y);
}

void gelu_backward_bf16(Queue& q, Tensor x, Tensor dy, Tensor dx) {
  checked_gelu_backward(q, "gelu_backward_bf16", DType::kBF16, x, dy, dx);
}

void attention_forward_bf16(Queue& q, Tensor qkv, Tensor out, Tensor probs, int64_t heads) {
  checked_attention_forward(q, "attention_forward_bf16", DType::kBF16, qkv, out, probs, heads);
}

void attention_backward_bf16(Queue& q, Tensor dout, Tensor qkv, Tensor probs, Tensor dqkv,
                             Tensor scratch, int64_t heads) {
  checked_attention_backward(q, "attention_backward_bf16", DType::kBF16, dout, qkv, probs, dqkv,
                             scratch, heads);
}

}  // namespace petaring::kernels
