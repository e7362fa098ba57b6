#include "trainer/train.h"

#include <algorithm>
#include <cmath>

#include "device/kernels.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/schedule.h"

namespace petaring {

Trainer::Trainer(const Recipe& recipe, Model& model, DataSource& data, Device& device,
                 Communicator& comm)
    : recipe_(recipe), model_(model), data_(data), comm_(comm),
      sampler_(recipe.training.seed, data.size(Split::kTrain)),
      batch_(recipe.training.batch_size), micro_batches_(recipe.training.grad_accum_steps),
      global_batch_(batch_ * comm.size() * micro_batches_) {
  if (batch_ > model.max_batch() || batch_ > data.max_batch()) {
    PR_FAIL(kInvalidArgument, recipe.source, ": training.batch_size ", batch_,
            " exceeds the largest batch the model (", model.max_batch(), ") or data source (",
            data.max_batch(), ") was built for");
  }
  if (!sampler_.fits(position_, global_batch_)) {
    PR_FAIL(kInvalidArgument, recipe.source, ": training.batch_size ", batch_, " x ",
            comm.size(), " ranks x ", micro_batches_, " micro-batches = ", global_batch_,
            " exceeds the ", data.size(Split::kTrain),
            " training samples; lower training.batch_size or training.grad_accum_steps");
  }
  total_steps_ = count_total_steps();
  micro_losses_.resize(static_cast<size_t>(micro_batches_));
  queue_ = device.create_queue(QueueKind::kCompute);
  norm_ = device.allocate(sizeof(float));
  model.initialize(*queue_, recipe.training.seed);
  optimizer_ = make_optimizer(recipe.optimizer, device, *queue_, model.params(), model.grads());
  queue_->synchronize();
  if (comm.size() > 1) {
    void* params = model.params().buffer->host_data();
    PR_CHECK(params != nullptr) << "data parallel needs host-visible parameters for now";
    comm.broadcast(static_cast<char*>(params) + model.params().offset, model.params().bytes(), 0);
    sync_ = std::make_unique<GradientSync>(comm, model.grads(), recipe.training.bucket_mb);
  }
}

Trainer::~Trainer() = default;

int64_t Trainer::count_total_steps() const {
  const TrainingConfig& cfg = recipe_.training;
  const int64_t per_epoch = sampler_.dataset_size() / global_batch_;
  int64_t total = updates_;
  if (position_.epoch < cfg.epochs) {
    total += sampler_.steps_left_in_epoch(position_, global_batch_) +
             (cfg.epochs - position_.epoch - 1) * per_epoch;
  }
  if (cfg.max_steps > 0) total = std::min(total, cfg.max_steps);
  return total;
}

float Trainer::step() {
  PR_CHECK(!finished()) << "step " << updates_ << " of " << total_steps_;
  Queue& q = *queue_;
  StepOptions options;
  options.grad_scale = 1.0f / static_cast<float>(micro_batches_);
  for (int64_t m = 0; m < micro_batches_; ++m) {
    std::vector<int64_t> indices =
        sampler_.indices(position_, batch_, comm_.size(), micro_batches_, m, comm_.rank());
    Batch batch = data_.load(q, Split::kTrain, position_.epoch, indices.data(), batch_);
    options.accumulate = m > 0;
    const bool last = m + 1 == micro_batches_;
    if (last && sync_) {
      sync_->begin(q);
      options.on_grad_ready = sync_->callback();
    }
    model_.forward_backward(q, batch, options, &micro_losses_[static_cast<size_t>(m)]);
  }
  if (sync_) {
    sync_->end_backward();
    last_sync_ = sync_->wait();
    total_sync_.buckets += last_sync_.buckets;
    total_sync_.comm_s += last_sync_.comm_s;
    total_sync_.hidden_s += last_sync_.hidden_s;
    total_sync_.exposed_s += last_sync_.exposed_s;
  }
  const OptimizerConfig& opt = recipe_.optimizer;
  if (opt.clip_grad_norm > 0) clip_gradients(opt.clip_grad_norm);
  last_lr_ = scheduled_lr(opt, updates_, total_steps_);
  ++updates_;
  optimizer_->step(q, updates_, last_lr_);
  position_ = sampler_.advance(position_, global_batch_);
  q.synchronize();  // the losses, and errors of this step
  double sum = 0;
  for (float loss : micro_losses_) sum += loss;
  return static_cast<float>(sum / static_cast<double>(micro_batches_));
}

void Trainer::clip_gradients(double max_norm) {
  Queue& q = *queue_;
  Tensor grads = model_.grads();
  Tensor norm(norm_.get(), 0, Shape{1}, DType::kF32);
  float sum = 0;
  kernels::sum_squares(q, grads, norm);
  q.read(&sum, norm);
  q.synchronize();
  last_grad_norm_ = std::sqrt(static_cast<double>(sum));
  // PyTorch's coefficient: max_norm / (norm + 1e-6), applied only when below 1.
  const double coefficient = max_norm / (last_grad_norm_ + 1e-6);
  if (coefficient < 1.0) kernels::scale(q, grads, static_cast<float>(coefficient));
}

EvalResult Trainer::evaluate() {
  Queue& q = *queue_;
  const int64_t count = data_.size(Split::kEval);
  const int64_t rows = std::min(data_.max_batch(), model_.max_batch());
  // Rank r evaluates the contiguous share [begin, end) of the evaluation split.
  const int64_t begin = count * comm_.rank() / comm_.size();
  const int64_t end = count * (comm_.rank() + 1) / comm_.size();
  std::vector<int64_t> indices(static_cast<size_t>(rows));
  EvalSums sums;
  for (int64_t start = begin; start < end; start += rows) {
    const int64_t n = std::min(rows, end - start);
    for (int64_t i = 0; i < n; ++i) indices[static_cast<size_t>(i)] = start + i;
    Batch batch = data_.load(q, Split::kEval, position_.epoch, indices.data(), n);
    EvalSums part = model_.evaluate(q, batch);
    sums.loss += part.loss;
    sums.correct += part.correct;
    sums.count += part.count;
  }
  // Counts as i64 (exact), the loss sum as f32.
  int64_t counts[2] = {static_cast<int64_t>(sums.correct), static_cast<int64_t>(sums.count)};
  float loss_sum = static_cast<float>(sums.loss);
  if (comm_.size() > 1) {
    comm_.allreduce(counts, 2, DType::kI64, ReduceOp::kSum);
    comm_.allreduce(&loss_sum, 1, DType::kF32, ReduceOp::kSum);
  }
  EvalResult result;
  result.samples = counts[1];
  if (counts[1] > 0) {
    result.accuracy = static_cast<double>(counts[0]) / static_cast<double>(counts[1]);
    result.loss = static_cast<double>(loss_sum) / static_cast<double>(counts[1]);
  }
  return result;
}

double Trainer::average_over_ranks(double value) {
  if (comm_.size() == 1) return value;
  float v = static_cast<float>(value);
  comm_.allreduce(&v, 1, DType::kF32, ReduceOp::kAverage);
  return v;
}

CheckpointState Trainer::save_state() {
  CheckpointState state;
  state.step = updates_;
  state.position = position_;
  state.seed = recipe_.training.seed;
  state.world_size = comm_.size();
  state.global_batch = global_batch_;
  state.total_steps = total_steps_;
  state.recipe_hash = recipe_hash(recipe_);
  state.recipe_yaml = recipe_to_yaml(recipe_);
  state.model = model_.describe();
  state.rng_state = model_.rng_state();
  std::vector<std::pair<std::string, Tensor>> tensors = {{"params", model_.params()}};
  for (auto& named : optimizer_->state()) tensors.push_back(named);
  for (const auto& [name, tensor] : tensors) {
    std::vector<float> values(static_cast<size_t>(tensor.numel()));
    queue_->read(values.data(), tensor);
    state.tensors.emplace_back(name, std::move(values));
  }
  queue_->synchronize();
  return state;
}

std::vector<std::string> Trainer::restore(const CheckpointState& state) {
  if (state.model != model_.describe()) {
    PR_FAIL(kFailedPrecondition, "the checkpoint holds a ", state.model, " but the recipe builds a ",
            model_.describe(), "; resume with the recipe that wrote it");
  }
  std::vector<std::pair<std::string, Tensor>> tensors = {{"params", model_.params()}};
  for (auto& named : optimizer_->state()) tensors.push_back(named);
  std::string expected, found;
  for (const auto& [name, tensor] : tensors) expected += " " + name;
  for (const auto& [name, values] : state.tensors) found += " " + name;
  if (expected != found) {
    PR_FAIL(kFailedPrecondition, "the checkpoint holds tensors [", found, " ] but optimizer ",
            recipe_.optimizer.type, " needs [", expected,
            " ]; resume with the optimizer that wrote it");
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::vector<float>& values = state.tensors[i].second;
    PR_CHECK_EQ(static_cast<int64_t>(values.size()), tensors[i].second.numel()) << tensors[i].first;
    queue_->write(tensors[i].second, values.data());
  }
  queue_->synchronize();  // `state` may die after return
  model_.restore_rng_state(state.rng_state);
  updates_ = state.step;
  position_ = state.position;
  // A larger global batch may not fit in the rest of the epoch.
  if (!sampler_.fits(position_, global_batch_)) position_ = DataPosition{position_.epoch + 1, 0};
  total_steps_ = count_total_steps();
  std::vector<std::string> changes;
  if (state.world_size != comm_.size()) changes.push_back(str_cat("world size ", state.world_size, " -> ", comm_.size()));
  if (state.global_batch != global_batch_) changes.push_back(str_cat("global batch ", state.global_batch, " -> ", global_batch_));
  if (state.total_steps != total_steps_) changes.push_back(str_cat("total steps ", state.total_steps, " -> ", total_steps_));
  if (state.position != position_) {
    changes.push_back(str_cat("data position (epoch ", state.position.epoch, ", sample ", state.position.sample,
                              ") -> (epoch ", position_.epoch, ", sample 0)"));
  }
  return changes;
}

std::vector<float> Trainer::read_params() {
  std::vector<float> host(static_cast<size_t>(model_.num_params()));
  queue_->read(host.data(), model_.params());
  queue_->synchronize();
  return host;
}

}  // namespace petaring
