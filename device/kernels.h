// Typed launchers for the named kernel table. Each function checks shapes and dtypes on
// the host (throwing kInvalidArgument with the shapes involved), looks the kernel up by
// name on the queue's device (kUnimplemented when absent) and enqueues it: all are
// asynchronous, in queue order. Unless stated otherwise tensors are f32, dense,
// row-major, and outputs may not alias inputs.
//
// The KernelArgs layout of each kernel is written beside it: backends implement these
// names with exactly this contract.
#pragma once

#include "device/device.h"

namespace petaring::kernels {

// "gemm": C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
// op(A): (M, K), op(B): (K, N), C: (M, N). beta == 0 ignores C's old contents (even NaN).
// args: tensors {A, B, C}; floats {alpha, beta}; ints {trans_a, trans_b}.
void gemm(Queue& q, bool trans_a, bool trans_b, float alpha, Tensor a, Tensor b, float beta,
          Tensor c);

// "bias_add": Y[i, j] += bias[j]. Y: (B, N), bias: (N). In place on Y.
// args: tensors {Y, bias}.
void bias_add(Queue& q, Tensor y, Tensor bias);

// "bias_grad": dbias[j] = beta * dbias[j] + sum_i dY[i, j]. dY: (B, N), dbias: (N).
// The backward of bias_add. args: tensors {dY, dbias}; floats {beta}.
void bias_grad(Queue& q, Tensor dy, Tensor dbias, float beta);

// "relu": Y = max(X, 0). Same shape; Y may alias X. args: tensors {X, Y}.
void relu(Queue& q, Tensor x, Tensor y);

// "relu_backward": dX = dY where Y > 0, else 0 (Y: relu's output). dX may alias dY.
// args: tensors {Y, dY, dX}.
void relu_backward(Queue& q, Tensor y, Tensor dy, Tensor dx);

// "softmax_xent_forward": row-wise softmax of logits (B, C) into probs (B, C), and
// loss[0] = mean_i -log(probs[i, labels[i]]). labels: (B) i32 in [0, C); a label out of
// range raises kInvalidArgument naming the row and value. loss: (1).
// args: tensors {logits, labels, probs, loss}.
void softmax_xent_forward(Queue& q, Tensor logits, Tensor labels, Tensor probs, Tensor loss);

// "softmax_xent_backward": dlogits = (probs - onehot(labels)) * scale, usually
// scale = 1 / B for a mean loss. args: tensors {probs, labels, dlogits}; floats {scale}.
void softmax_xent_backward(Queue& q, Tensor probs, Tensor labels, Tensor dlogits, float scale);

// "sgd_momentum": PyTorch's SGD, element-wise over same-shape params, grads, velocity:
//   g = grad + weight_decay * param
//   v = momentum * v + g            (v starts at 0)
//   param -= lr * (nesterov ? g + momentum * v : v)
// args: tensors {param, grad, velocity}; floats {lr, momentum, weight_decay}; ints {nesterov}.
void sgd_momentum(Queue& q, Tensor param, Tensor grad, Tensor velocity, float lr, float momentum,
                  float weight_decay, bool nesterov);

// "adamw": PyTorch's AdamW (decoupled weight decay, bias correction), element-wise over
// same-shape params, grads and the moment estimates m, v (both start at 0):
//   param *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * grad
//   v = beta2 * v + (1 - beta2) * grad^2
//   param -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// `t` is the 1-based step count (>= 1). In place on param, m and v.
// args: tensors {param, grad, m, v}; floats {lr, beta1, beta2, eps, weight_decay}; ints {t}.
void adamw(Queue& q, Tensor param, Tensor grad, Tensor m, Tensor v, float lr, float beta1,
           float beta2, float eps, float weight_decay, int64_t t);

// "sum_squares": out[0] = sum_i X[i]^2, accumulated in double and rounded once to f32.
// X: any shape (0 elements give 0), out: (1), disjoint from X. With "scale" this gives
// clipping by global norm. args: tensors {X, out}.
void sum_squares(Queue& q, Tensor x, Tensor out);

// "fill": X = value. args: tensors {X}; floats {value}.
void fill(Queue& q, Tensor x, float value);
// "copy": Y = X (same numel). args: tensors {X, Y}.
void copy(Queue& q, Tensor x, Tensor y);
// "scale": X *= alpha, in place. args: tensors {X}; floats {alpha}.
void scale(Queue& q, Tensor x, float alpha);

}  // namespace petaring::kernels
