// run_training: the whole recipe, step by step, with progress, evaluation and metrics.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/checkpoint.h"
#include "trainer/data/tokens.h"
#include "trainer/factory.h"
#include "trainer/metrics.h"
#include "trainer/train.h"

namespace petaring {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kRepeatedSignalWindowNs = 1'000'000'000;  // 1 s

volatile std::sig_atomic_t stop_signal = 0;      // the first SIGTERM/SIGINT received
volatile std::sig_atomic_t preemption_saved = 0;  // the preemption checkpoint is on disk
std::atomic<int64_t> first_signal_ns{0};          // CLOCK_MONOTONIC of the first one
static_assert(std::atomic<int64_t>::is_always_lock_free, "read and written in a signal handler");

int64_t monotonic_ns() {  // clock_gettime is async-signal-safe
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// Async-signal-safe: flags, a lock-free atomic, clock_gettime, _exit, signal and raise only.
void on_stop_signal(int signal) {
  const int64_t now = monotonic_ns();
  if (stop_signal == 0) {
    first_signal_ns.store(now);
    stop_signal = signal;
    return;
  }
  // Ctrl-C reaches a rank twice at once: from the terminal and forwarded by
  // `petaring launch` (or mpirun). That is still the first request.
  if (now - first_signal_ns.load() < kRepeatedSignalWindowNs) return;
  if (preemption_saved != 0) ::_exit(kPreemptedExitCode);
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// "section.key" -> the value's YAML text, for a recipe_to_yaml document.
std::map<std::string, std::string> flat_keys(const std::string& yaml) {
  std::map<std::string, std::string> out;
  YAML::Node root = YAML::Load(yaml);
  for (auto section = root.begin(); section != root.end(); ++section) {
    for (auto key = section->second.begin(); key != section->second.end(); ++key) {
      YAML::Emitter value;
      value << YAML::Flow << key->second;
      out[section->first.Scalar() + "." + key->first.Scalar()] = value.c_str();
    }
  }
  return out;
}

// "training.batch_size 64 -> 32, ..." for the keys whose values differ.
std::string recipe_changes(const std::string& then, const std::string& now) {
  const std::map<std::string, std::string> old_keys = flat_keys(then), new_keys = flat_keys(now);
  std::string out;
  for (const auto& [key, value] : new_keys) {
    auto old = old_keys.find(key);
    const std::string was = old == old_keys.end() ? "(absent)" : old->second;
    if (was != value) out += str_cat(out.empty() ? "" : ", ", key, " ", was, " -> ", value);
  }
  return out;
}

// Rank 0 picks the checkpoint (newest intact one) and tells the others its path, so that
// every rank loads the same one; each rank then reads and verifies it.
CheckpointState load_for_resume(const std::string& dir, Communicator& comm, std::string* path) {
  std::string chosen;
  int64_t length = -1;
  if (comm.rank() == 0) {
    try {
      read_latest_checkpoint(dir, &chosen);
      length = static_cast<int64_t>(chosen.size());
    } catch (...) {
      if (comm.size() == 1) throw;
      comm.broadcast(&length, sizeof(length), 0);  // tell the others before failing
      throw;
    }
  }
  if (comm.size() > 1) {
    comm.broadcast(&length, sizeof(length), 0);
    if (length < 0) PR_FAIL(kNotFound, "rank 0 found no usable checkpoint in ", dir);
    chosen.resize(static_cast<size_t>(length));
    comm.broadcast(chosen.data(), chosen.size(), 0);
  }
  *path = chosen;
  return read_checkpoint(chosen);
}

// How the ranks agree to stop after the same step without a blocking collective per step:
// at each step boundary a rank waits for the allreduce (max) of the flags issued at the
// previous boundary (it ran on the progress thread during this step, so it is done) and
// issues the next one with its own flag. A stop asked before boundary k is agreed at k+1.
class StopAgreement {
 public:
  explicit StopAgreement(Communicator& comm) : comm_(comm) {}
  StopAgreement(const StopAgreement&) = delete;
  StopAgreement& operator=(const StopAgreement&) = delete;
  ~StopAgreement() {  // the operation owns `flag_` until it has finished
    if (!work_) return;
    try {
      work_->wait();
    } catch (...) {  // the run is failing already; its own error is the one to report
    }
  }
  // True on every rank at the same boundary, once any rank's `requested` was true.
  bool stop(bool requested) {
    if (comm_.size() == 1) return requested;
    if (work_) {
      work_->wait();
      work_.reset();
      if (flag_ != 0) return true;
    }
    flag_ = requested ? 1 : 0;
    work_ = comm_.allreduce_async(&flag_, 1, DType::kI64, ReduceOp::kMax);
    return false;
  }

 private:
  Communicator& comm_;
  int64_t flag_ = 0;
  std::shared_ptr<Work> work_;
};

// The end of a preempted run: the checkpoint of this step (unless one was just written),
// then a barrier so that no rank exits before it is on disk.
template <typename Save>
TrainResult stop_preempted(const Recipe& recipe, Communicator& comm, Trainer& trainer,
                           Reporter& reporter, const std::string& checkpoint_dir, bool saved,
                           Save& save, TrainResult& result) {
  const int64_t step = trainer.steps_done();
  if (!saved) save();
  if (comm.size() > 1) comm.barrier();
  if (!checkpoint_dir.empty()) mark_preemption_saved();
  result.preempted = true;
  result.steps = step;
  result.checkpoint = checkpoint_dir.empty() ? "" : checkpoint_path(checkpoint_dir, step);
  const std::string where = result.checkpoint.empty()
      ? str_cat("no checkpoint (set checkpoint.dir in ", recipe.source, " to keep the work)")
      : str_cat("checkpoint ", result.checkpoint);
  reporter.event({{"event", "preempted"}, {"step", step}, {"checkpoint", result.checkpoint},
                  {"stop_check_s", result.stop_check_s}},
                 str_cat("preempted at step ", step, "; ", where, "; resume with --resume"));
  return result;
}

}  // namespace

void install_preemption_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
}

bool preemption_requested() { return stop_signal != 0; }

void mark_preemption_saved() { preemption_saved = 1; }

TrainResult run_training(const Recipe& recipe, Communicator& comm, Device& device,
                         const TrainOptions& options) {
  const bool leader = comm.rank() == 0;
  Reporter reporter(leader, options.metrics_path, options.resume);
  std::unique_ptr<DataSource> data = make_data_source(recipe, device);
  std::unique_ptr<Model> model = make_model(recipe, *data, device);
  Trainer trainer(recipe, *model, *data, device, comm);
  const TrainingConfig& cfg = recipe.training;
  const std::string checkpoint_dir =
      !recipe.checkpoint.dir.empty() ? recipe.checkpoint.dir : options.resume_dir;
  TrainResult result;
  if (options.resume) {
    const std::string dir = !options.resume_dir.empty() ? options.resume_dir : recipe.checkpoint.dir;
    if (dir.empty()) {
      PR_FAIL(kInvalidArgument, "--resume needs a folder: give --resume DIR or set checkpoint.dir in ",
              recipe.source);
    }
    std::string path;
    CheckpointState state = load_for_resume(dir, comm, &path);
    std::vector<std::string> changes = trainer.restore(state);
    if (state.recipe_hash != recipe_hash(recipe)) {
      changes.push_back(str_cat("recipe: ", recipe_changes(state.recipe_yaml, recipe_to_yaml(recipe))));
    }
    result.resumed_from = state.step;
    std::string line = str_cat("resumed from ", path, " at step ", state.step, " (epoch ",
                               state.position.epoch + 1, ", sample ", state.position.sample, ")");
    for (size_t i = 0; i < changes.size(); ++i) line += (i == 0 ? "; changed: " : ", ") + changes[i];
    if (changes.empty()) line += "; nothing changed";
    reporter.event({{"event", "resume"}, {"step", state.step}, {"path", path}, {"changes", changes}}, line);
  }
  int64_t saved_step = -1;
  auto save = [&] {
    saved_step = trainer.steps_done();
    if (checkpoint_dir.empty() || !leader) return;  // every rank holds the same state
    CheckpointState state = trainer.save_state();
    write_checkpoint(checkpoint_dir, state, recipe.checkpoint.keep);
    PR_LOG(kInfo) << "checkpoint " << checkpoint_path(checkpoint_dir, state.step);
  };
  const int64_t total_steps = trainer.total_steps();
  if (trainer.finished()) {
    reporter.event({{"event", "final"}, {"steps", trainer.steps_done()}, {"nothing_to_do", true}},
                   str_cat("nothing left to train: the run is at step ", trainer.steps_done(),
                           " of ", total_steps, "; raise training.max_steps or epochs to go on"));
    result.steps = trainer.steps_done();
    result.world_size = comm.size();
    return result;
  }
  const int64_t global_batch = trainer.global_batch();
  const double items_per_step = static_cast<double>(global_batch * data->items_per_sample());
  const bool text = data->item_unit() == "tokens";
  if (leader) {
    PR_LOG(kInfo) << "training " << model->describe() << " (" << model->num_params()
                  << " parameters) on " << data->describe() << ", " << comm.size()
                  << " rank(s), global batch " << global_batch << " (" << trainer.micro_batches()
                  << " micro-batch(es) per rank), " << total_steps << " steps";
  }

  result.world_size = comm.size();
  StopAgreement stop_agreement(comm);
  double train_seconds = 0;  // steps only, evaluation excluded
  const Clock::time_point run_start = Clock::now();
  Clock::time_point since = Clock::now();  // start of the current stretch of steps
  int64_t done_at_start = trainer.steps_done();
  // Logged throughput covers the steps since the previous logged one (evaluation excluded).
  double window_start_s = 0;
  int64_t window_start_step = done_at_start;
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
    double rate_steps = steps_run, rate_seconds = elapsed;  // since the start
    if (logged && elapsed > window_start_s) {
      rate_steps = static_cast<double>(done - window_start_step);
      rate_seconds = elapsed - window_start_s;
      window_start_s = elapsed;
      window_start_step = done;
    }
    info.samples_per_s = rate_steps * static_cast<double>(global_batch) / rate_seconds;
    if (text) info.tokens_per_s = rate_steps * items_per_step / rate_seconds;
    if (comm.size() > 1) info.comm_s = trainer.last_sync().comm_s;
    info.eta_s = elapsed / steps_run * static_cast<double>(total_steps - done);
    info.elapsed_s = seconds_since(run_start);
    reporter.step(info, logged);
    if (logged) result.loss = info.loss;
    if (recipe.checkpoint.every > 0 && done % recipe.checkpoint.every == 0 && !trainer.finished()) save();
    if (options.stop_requested && !trainer.finished()) {
      const Clock::time_point check_start = Clock::now();
      const bool stop = stop_agreement.stop(options.stop_requested());
      result.stop_check_s += seconds_since(check_start);
      if (stop) return stop_preempted(recipe, comm, trainer, reporter, checkpoint_dir,
                                           saved_step == done, save, result);
    }
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
  if (trainer.steps_done() > done_at_start || !options.resume) save();
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
                                 {"stop_check_s", result.stop_check_s},
                                 {"buckets_per_step", trainer.gradient_sync()
                                      ? static_cast<int64_t>(trainer.gradient_sync()->bucket_sizes().size())
                                      : int64_t{0}}};
  if (text) final_record["tokens_per_s"] = result.items_per_s;
  std::string final_line = line;
  // Token data: the unigram entropy of the text, which a model's loss should fall below.
  if (const auto* tokens = dynamic_cast<const TokenSource*>(data.get())) {
    final_record["unigram_entropy"] = tokens->unigram_entropy();
    char entropy[64];
    std::snprintf(entropy, sizeof(entropy), ", unigram entropy %.4f nats", tokens->unigram_entropy());
    final_line += entropy;
  }
  reporter.event(final_record, final_line);
  return result;
}

}  // namespace petaring
