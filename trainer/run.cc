// run_training: the whole recipe, step by step, with progress, evaluation and metrics.
#include <chrono>
#include <cstdio>

#include "runtime/log.h"
#include "trainer/factory.h"
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
  std::unique_ptr<DataSource> data = make_data_source(recipe, device);
  std::unique_ptr<Model> model = make_model(recipe, *data, device);
  Trainer trainer(recipe, *model, *data, device, comm);
  const TrainingConfig& cfg = recipe.training;
  const int64_t total_steps = trainer.total_steps();
  const int64_t global_batch = trainer.global_batch();
  const double items_per_step = static_cast<double>(global_batch * data->items_per_sample());
  const bool text = data->item_unit() == "tokens";
  if (leader) {
    PR_LOG(kInfo) << "training " << model->describe() << " (" << model->num_params()
                  << " parameters) on " << data->describe() << ", " << comm.size()
                  << " rank(s), global batch " << global_batch << " (" << trainer.micro_batches()
                  << " micro-batch(es) per rank), " << total_steps << " steps";
  }

  TrainResult result;
  result.world_size = comm.size();
  double train_seconds = 0;  // steps only, evaluation excluded
  const Clock::time_point run_start = Clock::now();
  Clock::time_point since = Clock::now();  // start of the current stretch of steps
  int64_t done_at_start = trainer.steps_done();
  while (!trainer.finished()) {
    const int64_t epoch = trainer.position().epoch;
    float loss = trainer.step();
    const int64_t done = trainer.steps_done();
    const bool epoch_ended = trainer.position().epoch != epoch || trainer.finished();
    const bool logged = done % cfg.log_every == 0 || trainer.finished();
    const double elapsed = train_seconds + seconds_since(since);
    const double steps_run = static_cast<double>(done - done_at_start);
    Reporter::StepInfo info;
    info.epoch = epoch + 1;
    info.epochs = cfg.epochs;
    info.step = done;
    info.total_steps = total_steps;
    // Every rank takes part in the same averaging steps; others use the local loss.
    info.loss = logged ? trainer.average_over_ranks(loss) : loss;
    info.lr = trainer.last_lr();
    if (recipe.optimizer.clip_grad_norm > 0) info.grad_norm = trainer.last_grad_norm();
    info.samples_per_s = steps_run * static_cast<double>(global_batch) / elapsed;
    if (text) info.tokens_per_s = steps_run * items_per_step / elapsed;
    if (comm.size() > 1) info.comm_s = trainer.last_sync().comm_s;
    info.eta_s = elapsed / steps_run * static_cast<double>(total_steps - done);
    info.elapsed_s = seconds_since(run_start);
    reporter.step(info, logged);
    if (logged) result.loss = info.loss;
    if (!epoch_ended) continue;
    trainer.queue().synchronize();
    train_seconds += seconds_since(since);
    if (cfg.evaluate && data->size(Split::kEval) > 0) {
      EvalResult eval = trainer.evaluate();
      result.test_accuracy = eval.accuracy;
      char line[160];
      std::snprintf(line, sizeof(line), "epoch %lld: test accuracy %.4f, test loss %.4f (%lld %s)",
                    static_cast<long long>(epoch + 1), eval.accuracy, eval.loss,
                    static_cast<long long>(eval.samples), data->item_unit().c_str());
      reporter.event({{"event", "eval"},
                      {"epoch", epoch + 1},
                      {"step", done},
                      {"test_accuracy", eval.accuracy},
                      {"test_loss", eval.loss}},
                     line);
    }
    since = Clock::now();
  }
  const int64_t steps_run = trainer.steps_done() - done_at_start;
  result.steps = trainer.steps_done();
  result.elapsed_s = seconds_since(run_start);
  result.samples_per_s =
      train_seconds > 0 ? static_cast<double>(steps_run * global_batch) / train_seconds : 0;
  result.items_per_s =
      train_seconds > 0 ? static_cast<double>(steps_run) * items_per_step / train_seconds : 0;
  const SyncStats& sync = trainer.total_sync();
  const double hidden_fraction = sync.comm_s > 0 ? sync.hidden_s / sync.comm_s : 0.0;
  char line[240];
  std::snprintf(line, sizeof(line),
                "final: %lld steps, loss %.4f, %.0f %s/s, test accuracy %.4f, world size %d, "
                "comm %.3f s (%.0f%% hidden behind backward)",
                static_cast<long long>(result.steps), result.loss,
                text ? result.items_per_s : result.samples_per_s, text ? "tokens" : "samples",
                result.test_accuracy, result.world_size, sync.comm_s, 100.0 * hidden_fraction);
  nlohmann::json final_record = {{"event", "final"},
                                 {"steps", result.steps},
                                 {"loss", result.loss},
                                 {"samples_per_s", result.samples_per_s},
                                 {"test_accuracy", result.test_accuracy},
                                 {"world_size", result.world_size},
                                 {"global_batch", global_batch},
                                 {"train_seconds", train_seconds},
                                 {"elapsed_s", result.elapsed_s},
                                 {"comm_s", sync.comm_s},
                                 {"comm_exposed_s", sync.exposed_s},
                                 {"comm_hidden_fraction", hidden_fraction},
                                 {"buckets_per_step", trainer.gradient_sync()
                                      ? static_cast<int64_t>(trainer.gradient_sync()->bucket_sizes().size())
                                      : int64_t{0}}};
  if (text) final_record["tokens_per_s"] = result.items_per_s;
  reporter.event(final_record, line);
  return result;
}

}  // namespace petaring
