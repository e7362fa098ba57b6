// Optimizers over the MLP's flat parameter buffer: one update of every parameter from the
// (already averaged, possibly clipped) gradient buffer of the same layout. Each optimizer
// owns its state buffers on the device, zeroed at construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "device/device.h"
#include "trainer/recipe.h"

namespace petaring {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update, asynchronous on `q`: `t` counts updates from 1, `lr` is this update's
  // (scheduled) rate. Reads the gradients, writes the parameters and the state.
  virtual void step(Queue& q, int64_t t, double lr) = 0;
  // The state buffers by name ("velocity"; "m", "v"), each shaped like the parameters:
  // what a checkpoint saves and restores.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
};

// The optimizer of `config.type` ("sgd" or "adamw") for `params` and `grads`, same shape
// (n), which must outlive it. Allocates its state on `device` (kOutOfMemory if the budget
// is too small) and zeroes it on `q`.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, Device& device,
                                          Queue& q, Tensor params, Tensor grads);

}  // namespace petaring
