// Data-parallel training of any Model (trainer/model.h) on any DataSource
// (trainer/data/source.h).
//
// One step, as every rank runs it:
//   for each of the recipe's micro-batches (training.grad_accum_steps):
//     next micro-batch (this rank's share, by global sample index) -> forward -> loss ->
//     backward, accumulating into the gradient buffer (scaled by 1 / micro-batches)
//   -> allreduce(average) of the gradient buffer in buckets (trainer/grad_sync.h), each
//      started during the last micro-batch's backward as soon as its gradients are final
//   -> clipping by global norm (optional) -> optimizer update at the scheduled rate.
// Clipping runs after the allreduce, on the whole averaged gradient buffer, so every rank
// computes the same norm and applies the same update.
// Sharding (trainer/data/source.h): the samples of a step follow the global sample index
// in the epoch's permutation, so W ranks at batch B see exactly the samples of one rank at
// batch W*B, and average to the same gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "device/device.h"
#include "trainer/checkpoint.h"
#include "trainer/data/source.h"
#include "trainer/grad_sync.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/recipe.h"

namespace petaring {

struct EvalResult {
  double accuracy = 0;
  double loss = 0;
  int64_t samples = 0;  // rows (or tokens) evaluated, over all ranks
};

class Trainer {
 public:
  // `model`, `data` and `comm` must outlive the trainer. Parameters are initialized from
  // the recipe's seed and broadcast from rank 0, like DDP.
  Trainer(const Recipe& recipe, Model& model, DataSource& data, Device& device,
          Communicator& comm);
  ~Trainer();

  // Samples per optimizer step over all ranks and micro-batches.
  int64_t global_batch() const { return global_batch_; }
  int64_t micro_batches() const { return micro_batches_; }
  // Updates in the whole run: every epoch, capped by training.max_steps. The schedule
  // decays over this many steps.
  int64_t total_steps() const { return total_steps_; }
  // Optimizer steps taken so far.
  int64_t steps_done() const { return updates_; }
  const DataPosition& position() const { return position_; }
  // True once total_steps() steps are done.
  bool finished() const { return updates_ >= total_steps_; }

  // One optimizer step from the current data position; returns this rank's mean loss
  // over its micro-batches. Moves the position on (to the next epoch's start when the
  // epoch has no full step left).
  float step();
  // The learning rate of the last step (0 before the first).
  double last_lr() const { return last_lr_; }
  // The global gradient norm of the last step, before clipping; computed only when
  // optimizer.clip_grad_norm > 0 (0 otherwise).
  double last_grad_norm() const { return last_grad_norm_; }
  // Evaluation-split loss and accuracy, each rank on its contiguous share, summed over
  // ranks. Blocking collective.
  EvalResult evaluate();
  // Mean of `value` over ranks (blocking collective).
  double average_over_ranks(double value);
  // Gradient communication of the last step and summed over all steps (zero at 1 rank).
  const SyncStats& last_sync() const { return last_sync_; }
  const SyncStats& total_sync() const { return total_sync_; }
  // nullptr at 1 rank. For tests (bucket sizes, event trace).
  GradientSync* gradient_sync() { return sync_.get(); }

  // Everything a checkpoint holds (parameters, optimizer state, step, data position, RNG,
  // recipe hash). Blocks on the queue.
  CheckpointState save_state();
  // Continues from `state`: parameters, optimizer state, step count and data position.
  // At another world size the data position carries over (samples follow the global
  // index) and total_steps() is recounted. Returns what changed, one clause each
  // ("world size 2 -> 1", ...), empty when nothing did. Throws kFailedPrecondition when
  // the model or optimizer does not match the checkpoint's.
  std::vector<std::string> restore(const CheckpointState& state);

  std::vector<float> read_params();
  Queue& queue() { return *queue_; }
  Model& model() { return model_; }
  DataSource& data() { return data_; }

 private:
  // Scales the (averaged) gradients so that their global norm is at most `max_norm`, as
  // torch.nn.utils.clip_grad_norm_; blocks to read the norm.
  void clip_gradients(double max_norm);
  int64_t count_total_steps() const;

  const Recipe& recipe_;
  Model& model_;
  DataSource& data_;
  Communicator& comm_;
  Sampler sampler_;
  DataPosition position_;
  int64_t batch_;  // per rank and micro-batch
  int64_t micro_batches_;
  int64_t global_batch_;
  int64_t total_steps_ = 0;
  int64_t updates_ = 0;  // optimizer steps taken
  double last_lr_ = 0;
  double last_grad_norm_ = 0;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<GradientSync> sync_;
  SyncStats last_sync_, total_sync_;
  std::unique_ptr<Buffer> norm_;
  std::vector<float> micro_losses_;
};

// Graceful preemption. A pool reclaiming a GPU (or a person) sends SIGTERM or SIGINT to
// the ranks; run_training then stops at the next step boundary on every rank at the same
// step, writes a checkpoint (when a checkpoint folder is configured), logs
// "preempted at step S; checkpoint PATH; resume with --resume" and returns with
// TrainResult::preempted set; `petaring train` then exits with kPreemptedExitCode
// (EX_TEMPFAIL of sysexits.h: stopped on request, resumable, not failed).
inline constexpr int kPreemptedExitCode = 75;

// Makes SIGTERM and SIGINT set a flag (async-signal-safe) that preemption_requested()
// reads. A second signal (1 s or more after the first: a terminal's Ctrl-C forwarded by
// `petaring launch` arrives twice at once) ends the process at once: with
// kPreemptedExitCode when the preemption checkpoint is already on disk
// (mark_preemption_saved()), else by the signal.
void install_preemption_handlers();
bool preemption_requested();
void mark_preemption_saved();

struct TrainOptions {
  // Asked at every step boundary on every rank (empty: never); when it returns true on
  // any rank, all ranks stop after the same step and the run ends preempted. The ranks
  // agree through an allreduce (max) of one integer per step, issued asynchronously at
  // one boundary and awaited at the next (it runs during the step), so a stop asked at
  // boundary k takes effect at boundary k+1 (at once at 1 rank). `petaring train` passes
  // preemption_requested.
  std::function<bool()> stop_requested;
  std::string metrics_path;  // JSONL; empty = none (appended to when resuming)
  // Continue from the newest good checkpoint of resume_dir (empty: the recipe's
  // checkpoint.dir). Checkpoints are written to checkpoint.dir, else to resume_dir.
  bool resume = false;
  std::string resume_dir;
};

struct TrainResult {
  int64_t steps = 0;
  double loss = 0;           // mean over ranks of the last step's loss
  double samples_per_s = 0;  // global, training steps only (evaluation excluded)
  double items_per_s = 0;    // the same in the data's unit (samples or tokens)
  double test_accuracy = 0;  // after the last epoch (0 when evaluation is off)
  double elapsed_s = 0;
  int world_size = 1;
  int64_t resumed_from = -1;  // the checkpoint's step when resumed
  bool preempted = false;     // stopped early by TrainOptions::stop_requested
  std::string checkpoint;     // when preempted: the checkpoint written (empty: none)
  double stop_check_s = 0;    // time spent at step boundaries agreeing on stops
};

// Runs the whole recipe: the model and data the recipe names (trainer/factory.h), every
// epoch, evaluation at the end of each, progress and metrics on rank 0.
TrainResult run_training(const Recipe& recipe, Communicator& comm, Device& device,
                         const TrainOptions& options);

}  // namespace petaring
