// Data-parallel training of the recipe's MLP on Fashion-MNIST.
//
// One step, as every rank runs it:
//   next batch (this rank's shard) -> forward -> loss -> backward -> allreduce(average)
//   of the gradient buffer -> clipping by global norm (optional) -> optimizer update at
//   the scheduled learning rate.
// Clipping runs after the allreduce, on the whole averaged gradient buffer, so every rank
// computes the same norm and applies the same update.
// Sharding: each epoch, the 60,000 training indices are shuffled by (seed, epoch) alone;
// global batch g is order[g*B*W, (g+1)*B*W) and rank r takes its r-th slice of B. A
// global batch that would be incomplete is dropped. So W ranks at batch B see exactly the
// samples of one rank at batch W*B, and average to the same gradient.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "device/device.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/mlp.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"

namespace petaring {

struct EvalResult {
  double accuracy = 0;
  double loss = 0;
  int64_t samples = 0;
};

class MlpTrainer {
 public:
  // `data` and `comm` must outlive the trainer. Parameters are initialized from the
  // recipe's seed and broadcast from rank 0, like DDP.
  MlpTrainer(const Recipe& recipe, const FashionMnist& data, Device& device, Communicator& comm);
  ~MlpTrainer();

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Updates in the whole run: every epoch, capped by training.max_steps. The schedule
  // decays over this many steps.
  int64_t total_steps() const { return total_steps_; }
  // Shuffles for `epoch` (0-based).
  void begin_epoch(int64_t epoch);
  // Runs global batch `step` (0-based within the epoch) and returns this rank's loss.
  // Each call is one more update for the optimizer's count and the schedule.
  float step(int64_t step);
  // The learning rate of the last step (0 before the first).
  double last_lr() const { return last_lr_; }
  // The global gradient norm of the last step, before clipping; computed only when
  // optimizer.clip_grad_norm > 0 (0 otherwise).
  double last_grad_norm() const { return last_grad_norm_; }
  // Test-set accuracy and loss, each rank on its shard, summed over ranks.
  EvalResult evaluate();
  // Mean of `value` over ranks (blocking collective).
  double average_over_ranks(double value);

  std::vector<float> read_params();
  Queue& queue() { return *queue_; }
  Mlp& model() { return *model_; }

 private:
  // Scales the (averaged) gradients so that their global norm is at most `max_norm`, as
  // torch.nn.utils.clip_grad_norm_; blocks to read the norm.
  void clip_gradients(double max_norm);

  const Recipe& recipe_;
  const FashionMnist& data_;
  Device& device_;
  Communicator& comm_;
  PixelScale scale_;
  int64_t batch_;  // per rank
  int64_t steps_per_epoch_ = 0;
  int64_t total_steps_ = 0;
  int64_t updates_ = 0;  // optimizer steps taken
  double last_lr_ = 0;
  double last_grad_norm_ = 0;
  std::vector<int64_t> order_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<Mlp> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Buffer> input_, labels_, probs_, loss_, norm_;
  std::vector<float> host_input_;
  std::vector<int32_t> host_labels_;
};

struct TrainOptions {
  std::string metrics_path;  // JSONL; empty = none
};

struct TrainResult {
  int64_t steps = 0;
  double loss = 0;           // mean over ranks of the last step's loss
  double samples_per_s = 0;  // global, training steps only (evaluation excluded)
  double test_accuracy = 0;  // after the last epoch (0 when evaluation is off)
  double elapsed_s = 0;
  int world_size = 1;
};

// Runs the whole recipe: every epoch, evaluation at the end of each, progress and metrics
// on rank 0. Loads the data set from recipe.data.path.
TrainResult run_training(const Recipe& recipe, Communicator& comm, Device& device,
                         const TrainOptions& options);

}  // namespace petaring
