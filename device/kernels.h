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

// ---- Transformer kernels (the GPT of trainer/gpt.h) ----------------------------------
// B: batch, T: sequence length, C: channels, H: heads, D = C / H, V: vocabulary.

// "embedding_forward": out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :].
// tokens: (B, T) i32 in [0, V) (one out of range raises kInvalidArgument naming its
// position and value); wte: (V, C); wpe: (P, C) with P >= T; out: (B, T, C).
// args: tensors {tokens, wte, wpe, out}.
void embedding_forward(Queue& q, Tensor tokens, Tensor wte, Tensor wpe, Tensor out);

// "embedding_backward": the backward of embedding_forward.
//   dwte = beta_wte * dwte + sum over (b, t) of dout[b, t, :] into row tokens[b, t]
//   dwpe = beta_wpe * dwpe + sum over b of dout[b, t, :] into row t (rows t >= T: scaled only)
// beta == 0 ignores old contents; beta_wte = 1 adds to an LM head's gradient (tied weights).
// args: tensors {dout, tokens, dwte, dwpe}; floats {beta_wte, beta_wpe}.
void embedding_backward(Queue& q, Tensor dout, Tensor tokens, Tensor dwte, Tensor dwpe,
                        float beta_wte, float beta_wpe);

// "layernorm_forward": per row of X (N, C) with mean m and biased variance v:
//   rstd = 1 / sqrt(v + eps),  Y = (X - m) * rstd * weight + bias.
// weight, bias: (C); Y: (N, C); mean, rstd: (N), kept for the backward.
// args: tensors {X, weight, bias, Y, mean, rstd}; floats {eps}.
void layernorm_forward(Queue& q, Tensor x, Tensor weight, Tensor bias, Tensor y, Tensor mean,
                       Tensor rstd, float eps);

// "layernorm_backward": with xhat = (X - mean) * rstd,
//   dX      = dx_beta * dX + rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),  g = dY * weight
//   dweight = param_beta * dweight + sum_rows dY * xhat
//   dbias   = param_beta * dbias + sum_rows dY
// Shapes as in layernorm_forward. dx_beta = 1 adds into a residual gradient.
// args: tensors {dY, X, weight, mean, rstd, dX, dweight, dbias}; floats {dx_beta, param_beta}.
void layernorm_backward(Queue& q, Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd,
                        Tensor dx, Tensor dweight, Tensor dbias, float dx_beta, float param_beta);

// "gelu": GPT-2's tanh form (PyTorch's gelu(approximate='tanh')), element-wise:
//   Y = 0.5 X (1 + tanh(sqrt(2/pi) (X + 0.044715 X^3))). Y may alias X exactly.
// args: tensors {X, Y}.
void gelu(Queue& q, Tensor x, Tensor y);

// "gelu_backward": dX = dY * gelu'(X) (X: gelu's input). dX may alias dY exactly.
// args: tensors {X, dY, dX}.
void gelu_backward(Queue& q, Tensor x, Tensor dy, Tensor dx);

// "add": Z = X + Y element-wise, same shapes (the residual connection). Z may alias X or Y
// exactly. args: tensors {X, Y, Z}.
void add(Queue& q, Tensor x, Tensor y, Tensor z);

// "attention_forward": causal multi-head self-attention over packed projections.
// qkv: (B, T, 3C), each row [q | k | v], each part H heads of D columns (head h at h*D).
//   probs[b, h, i, j] = softmax over j <= i of q_i . k_j / sqrt(D); 0 for j > i
//   out[b, i, h*D:(h+1)*D] = sum_j probs[b, h, i, j] v_j
// out: (B, T, C); probs: (B, H, T, T), kept for the backward. C % H == 0.
// args: tensors {qkv, out, probs}; ints {heads}.
void attention_forward(Queue& q, Tensor qkv, Tensor out, Tensor probs, int64_t heads);

// "attention_backward": dqkv (B, T, 3C) = the gradient of attention_forward's inputs
// given dout (B, T, C), overwritten. scratch: (B, H, T, T), contents unspecified before
// and after (it holds the gradient of the attention scores).
// args: tensors {dout, qkv, probs, dqkv, scratch}; ints {heads}.
void attention_backward(Queue& q, Tensor dout, Tensor qkv, Tensor probs, Tensor dqkv,
                        Tensor scratch, int64_t heads);

// ---- Mixed precision: bf16 storage, f32 arithmetic -----------------------------------
// The GPT's `training.precision: bf16` (trainer/gpt.h) runs on these. bf16 tensors hold
// weights and activations; every product is accumulated in f32, statistics (LayerNorm
// mean/rstd, softmax sums) are f32, and gradients are f32. Rounding to bf16 is to
// nearest, ties to even (runtime/dtype.h). A backend without them raises kUnimplemented
// naming the kernel (the launchers look them up like every other kernel).

// "convert": Y = X element-wise, f32 -> bf16 (rounded), bf16 -> f32 (exact) or a copy
// when the dtypes match. Same numel, disjoint. args: tensors {X, Y}.
void convert(Queue& q, Tensor x, Tensor y);

// "gemm_bf16": gemm's contract with A and B bf16, C f32 and the products summed in f32.
// args: tensors {A, B, C}; floats {alpha, beta}; ints {trans_a, trans_b}.
void gemm_bf16(Queue& q, bool trans_a, bool trans_b, float alpha, Tensor a, Tensor b, float beta,
               Tensor c);

// "linear_bf16": Y (N, O) = X (N, I) @ W^T + bias, X and W (O, I) bf16, bias (O) f32,
// summed in f32; Y f32, or bf16 rounded once from the f32 result.
// args: tensors {X, W, bias, Y}.
void linear_bf16(Queue& q, Tensor x, Tensor w, Tensor bias, Tensor y);

// "layernorm_forward_bf16": layernorm_forward with Y bf16 (X, weight, bias, mean, rstd
// and all arithmetic f32). args: tensors {X, weight, bias, Y, mean, rstd}; floats {eps}.
void layernorm_forward_bf16(Queue& q, Tensor x, Tensor weight, Tensor bias, Tensor y, Tensor mean,
                            Tensor rstd, float eps);

// "gelu_bf16": gelu with X and Y bf16, computed in f32. Y may alias X exactly.
// args: tensors {X, Y}.
void gelu_bf16(Queue& q, Tensor x, Tensor y);

// "gelu_backward_bf16": gelu_backward with X bf16, dY and dX f32. dX may alias dY exactly.
// args: tensors {X, dY, dX}.
void gelu_backward_bf16(Queue& q, Tensor x, Tensor dy, Tensor dx);

// "attention_forward_bf16": attention_forward with qkv, out and probs bf16; the scores,
// the softmax and the products are f32. args: tensors {qkv, out, probs}; ints {heads}.
void attention_forward_bf16(Queue& q, Tensor qkv, Tensor out, Tensor probs, int64_t heads);

// "attention_backward_bf16": attention_backward with qkv and probs bf16 (as written by
// attention_forward_bf16); dout, dqkv and scratch f32.
// args: tensors {dout, qkv, probs, dqkv, scratch}; ints {heads}.
void attention_backward_bf16(Queue& q, Tensor dout, Tensor qkv, Tensor probs, Tensor dqkv,
                             Tensor scratch, int64_t heads);

}  // namespace petaring::kernels
