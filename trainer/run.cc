// run_training: the whole recipe, epoch by epoch, with progress, evaluation and metrics.
#include <chrono>
#include <cstdio>

#include "runtime/log.h"
#include "trainer/metrics.h"
#include "trainer/train.h"

namespace petaring {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

TrainResult run_training(const Recipe& recipe, Communicator& comm, Device& device,
                         const TrainOptions& options) {
  const bool leader = comm.rank() == 0;
  Reporter reporter(leader, options.metrics_path);
  FashionMnist data = load_fashion_mnist(recipe.data.path);
  MlpTrainer trainer(recipe, data, device, comm);
  const TrainingConfig& cfg = recipe.training;
  const int64_t per_epoch = trainer.steps_per_epoch();
  const int64_t total_steps = trainer.total_steps();
  const int64_t global_batch = cfg.batch_size * comm.size();
  if (leader) {
    PR_LOG(kInfo) << "training " << recipe.model.type << " with " << trainer.model().num_params()
                  << " parameters on " << comm.size() << " rank(s), global batch " << global_batch
                  << ", " << total_steps << " steps";
  }

  TrainResult result;
  result.world_size = comm.size();
  double train_seconds = 0;  // steps only, evaluation excluded
  const Clock::time_point run_start = Clock::now();
  int64_t done = 0;
  for (int64_t epoch = 0; epoch < cfg.epochs && done < total_steps; ++epoch) {
    trainer.begin_epoch(epoch);
    Clock::time_point epoch_start = Clock::now();
    for (int64_t s = 0; s < per_epoch && done < total_steps; ++s) {
      float loss = trainer.step(s);
      ++done;
      bool logged = done % cfg.log_every == 0 || done == total_steps;
      double elapsed = train_seconds + seconds_since(epoch_start);
      Reporter::StepInfo info;
      info.epoch = epoch + 1;
      info.epochs = cfg.epochs;
      info.step = done;
      info.total_steps = total_steps;
      // Every rank takes part in the same averaging steps; others use the local loss.
      info.loss = logged ? trainer.average_over_ranks(loss) : loss;
      info.lr = trainer.last_lr();
      if (recipe.optimizer.clip_grad_norm > 0) info.grad_norm = trainer.last_grad_norm();
      info.samples_per_s = static_cast<double>(done * global_batch) / elapsed;
      info.eta_s = elapsed / static_cast<double>(done) * static_cast<double>(total_steps - done);
      info.elapsed_s = seconds_since(run_start);
      reporter.step(info, logged);
      if (logged) result.loss = info.loss;
    }
    trainer.queue().synchronize();
    train_seconds += seconds_since(epoch_start);
    if (cfg.evaluate) {
      EvalResult eval = trainer.evaluate();
      result.test_accuracy = eval.accuracy;
      char line[160];
      std::snprintf(line, sizeof(line), "epoch %lld: test accuracy %.4f, test loss %.4f (%lld images)",
                    static_cast<long long>(epoch + 1), eval.accuracy, eval.loss,
                    static_cast<long long>(eval.samples));
      reporter.event({{"event", "eval"},
                      {"epoch", epoch + 1},
                      {"step", done},
                      {"test_accuracy", eval.accuracy},
                      {"test_loss", eval.loss}},
                     line);
    }
  }
  result.steps = done;
  result.elapsed_s = seconds_since(run_start);
  result.samples_per_s = train_seconds > 0 ? static_cast<double>(done * global_batch) / train_seconds : 0;
  char line[200];
  std::snprintf(line, sizeof(line),
                "final: %lld steps, loss %.4f, %.0f samples/s, test accuracy %.4f, world size %d",
                static_cast<long long>(result.steps), result.loss, result.samples_per_s,
                result.test_accuracy, result.world_size);
  reporter.event({{"event", "final"},
                  {"steps", result.steps},
                  {"loss", result.loss},
                  {"samples_per_s", result.samples_per_s},
                  {"test_accuracy", result.test_accuracy},
                  {"world_size", result.world_size},
                  {"global_batch", global_batch},
                  {"train_seconds", train_seconds},
                  {"elapsed_s", result.elapsed_s}},
                 line);
  return result;
}

}  // namespace petaring
