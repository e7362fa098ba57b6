// The trainer's model interface, read this first. The training loop (trainer/train.h)
// knows models only through it:
//   Batch          one micro-batch already on the device (inputs and targets)
//   StepOptions    gradient scale, accumulate or overwrite, the gradient-ready callback
//   EvalSums       what evaluation of one batch adds up (loss, correct predictions)
//   Model          parameters and gradients as two contiguous f32 device buffers of the
//                  same layout; initialize; forward + loss + backward; evaluate
// A model owns its parameters, gradients and activations; the loop owns the optimizer,
// the gradient allreduce and the data (trainer/data/source.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "device/device.h"

namespace petaring {

// One micro-batch on the device, as a DataSource wrote it. The meaning of the tensors is
// a contract between a data source and the model it feeds (the recipe pairs them):
//   mlp + fashion_mnist: inputs (B, pixels) f32, targets (B) i32 class labels
//   gpt + text/tokens:   inputs (B, T) i32 token ids, targets (B, T) i32 next tokens
struct Batch {
  Tensor inputs;
  Tensor targets;
  int64_t samples = 0;  // B
  int64_t items = 0;    // what throughput counts: B for images, B*T tokens for text
};

// Called during backward for each parameter tensor, in the order backward finishes
// them, once that tensor's gradient slice [offset, offset + count) (elements of grads())
// is final for this micro-batch: `ready` completes when the kernels writing it have run.
// Called on the thread that called forward_backward, at enqueue time (the gradient
// is usually not computed yet: wait on `ready`, e.g. with Queue::wait_for, before reading
// it). Every parameter element is covered exactly once per call of forward_backward, and
// the last call ends backward: enqueue nothing after it (the loop takes that moment as
// backward's end when it measures how much communication was hidden).
using GradReadyFn =
    std::function<void(int64_t offset, int64_t count, std::shared_ptr<Event> ready)>;

struct StepOptions {
  // Gradients of (grad_scale * the mean loss over the micro-batch's rows): 1 / the number
  // of micro-batches makes a step's gradient that of the mean over all of them.
  float grad_scale = 1.0f;
  // false: backward overwrites grads(); true: adds to what grads() holds (accumulation).
  bool accumulate = false;
  // Optional; see GradReadyFn.
  GradReadyFn on_grad_ready;
};

// Sums over the rows (or tokens) of one evaluation batch.
struct EvalSums {
  double loss = 0;     // sum of per-row (per-token) losses
  double correct = 0;  // rows (tokens) whose argmax is the target
  double count = 0;    // rows (tokens) counted
};

class Model {
 public:
  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  virtual ~Model() = default;

  // "mlp 784-256-10", for logs.
  virtual std::string describe() const = 0;
  virtual int64_t num_params() const = 0;
  // (num_params) f32: every parameter in one contiguous device buffer, and every
  // gradient in another with the same layout, so a slice of grads() is a bucket.
  virtual Tensor params() const = 0;
  virtual Tensor grads() const = 0;
  // The largest micro-batch (rows) forward_backward and evaluate accept.
  virtual int64_t max_batch() const = 0;

  // Fills the parameters from `seed` (the recipe's init) and writes them to the device;
  // blocks until written. The same seed gives the same parameters on every machine.
  virtual void initialize(Queue& q, uint64_t seed) = 0;

  // Forward, loss and backward of one micro-batch, all enqueued on `q` (asynchronous).
  // `*loss` receives the micro-batch's mean loss once `q` has run that far (it must
  // stay valid until then). Calls options.on_grad_ready per parameter tensor, in backward
  // order, when set.
  virtual void forward_backward(Queue& q, const Batch& batch, const StepOptions& options,
                                float* loss) = 0;

  // Forward and loss only; blocks on `q` and returns the batch's sums.
  virtual EvalSums evaluate(Queue& q, const Batch& batch) = 0;

  // Optional: a model that draws random numbers while training (dropout) returns its
  // generator's state here, and takes it back from a checkpoint. Default: none.
  virtual std::string rng_state() const { return {}; }
  virtual void restore_rng_state(const std::string& /*state*/) {}
};

}  // namespace petaring
