#include "trainer/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "device/kernels.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/rng.h"
#include "trainer/schedule.h"

namespace petaring {
namespace {

constexpr int64_t kEvalBatch = 500;

std::unique_ptr<Buffer> allocate_f32(Device& device, int64_t count) {
  return device.allocate(static_cast<size_t>(count) * sizeof(float));
}

Tensor view(Buffer& buffer, Shape shape, DType dtype = DType::kF32) {
  return Tensor(&buffer, 0, shape, dtype);
}

}  // namespace

MlpTrainer::MlpTrainer(const Recipe& recipe, const FashionMnist& data, Device& device,
                       Communicator& comm)
    : recipe_(recipe), data_(data), device_(device), comm_(comm),
      batch_(recipe.training.batch_size) {
  if (recipe.model.layers.front() != data.train.pixels) {
    PR_FAIL(kInvalidArgument, recipe.source, ": model.layers[0] is ", recipe.model.layers.front(),
            " but the images have ", data.train.pixels, " pixels");
  }
  int64_t global_batch = batch_ * comm.size();
  steps_per_epoch_ = data.train.count / global_batch;
  if (steps_per_epoch_ == 0) {
    PR_FAIL(kInvalidArgument, recipe.source, ": training.batch_size ", batch_, " x ", comm.size(),
            " ranks = ", global_batch, " exceeds the ", data.train.count,
            " training samples; lower training.batch_size");
  }
  total_steps_ = steps_per_epoch_ * recipe.training.epochs;
  if (recipe.training.max_steps > 0) {
    total_steps_ = std::min(total_steps_, recipe.training.max_steps);
  }
  if (recipe.data.normalize) scale_ = pixel_statistics(data.train);
  queue_ = device.create_queue(QueueKind::kCompute);
  int64_t rows = std::max(batch_, kEvalBatch);
  model_ = std::make_unique<Mlp>(recipe.model, device, rows);
  int64_t classes = model_->output_size();
  input_ = allocate_f32(device, rows * model_->input_size());
  labels_ = device.allocate(static_cast<size_t>(rows) * sizeof(int32_t));
  probs_ = allocate_f32(device, rows * classes);
  loss_ = allocate_f32(device, 1);
  norm_ = allocate_f32(device, 1);
  host_input_.resize(static_cast<size_t>(rows * model_->input_size()));
  host_labels_.resize(static_cast<size_t>(rows));

  model_->initialize(*queue_, recipe.training.seed);
  optimizer_ = make_optimizer(recipe.optimizer, device, *queue_, model_->params(), model_->grads());
  queue_->synchronize();
  if (comm.size() > 1) {
    void* params = model_->params().buffer->host_data();
    PR_CHECK(params != nullptr) << "data parallel needs host-visible parameters for now";
    comm.broadcast(params, model_->params().bytes(), 0);
  }
}

MlpTrainer::~MlpTrainer() = default;

void MlpTrainer::begin_epoch(int64_t epoch) {
  Rng rng(Rng::mix(recipe_.training.seed, static_cast<uint64_t>(epoch)));
  order_ = rng.permutation(data_.train.count);
}

float MlpTrainer::step(int64_t step) {
  PR_CHECK(!order_.empty()) << "begin_epoch() first";
  PR_CHECK(step >= 0 && step < steps_per_epoch_) << "step " << step;
  Queue& q = *queue_;
  const int64_t first = (step * comm_.size() + comm_.rank()) * batch_;
  gather_batch(data_.train, order_.data() + first, batch_, scale_, host_input_.data(),
               host_labels_.data());
  Tensor x(input_.get(), 0, Shape{batch_, model_->input_size()}, DType::kF32);
  Tensor labels(labels_.get(), 0, Shape{batch_}, DType::kI32);
  Tensor probs(probs_.get(), 0, Shape{batch_, model_->output_size()}, DType::kF32);
  q.write(x, host_input_.data());
  q.write(labels, host_labels_.data());
  Tensor logits = model_->forward(q, x);
  kernels::softmax_xent_forward(q, logits, labels, probs, view(*loss_, Shape{1}));
  // The loss is a mean over this rank's B rows; averaging over ranks makes the gradient
  // that of the mean over the global batch.
  kernels::softmax_xent_backward(q, probs, labels, logits, 1.0f / static_cast<float>(batch_));
  model_->backward(q, logits);
  float loss = 0;
  q.read(&loss, view(*loss_, Shape{1}));
  q.synchronize();
  Tensor grads = model_->grads();
  if (comm_.size() > 1) {
    comm_.allreduce(grads.buffer->host_data(), static_cast<size_t>(grads.numel()), DType::kF32,
                    ReduceOp::kAverage);
  }
  const OptimizerConfig& opt = recipe_.optimizer;
  if (opt.clip_grad_norm > 0) clip_gradients(opt.clip_grad_norm);
  last_lr_ = scheduled_lr(opt, updates_, total_steps_);
  ++updates_;
  optimizer_->step(q, updates_, last_lr_);
  return loss;
}

void MlpTrainer::clip_gradients(double max_norm) {
  Queue& q = *queue_;
  Tensor grads = model_->grads();
  float sum = 0;
  kernels::sum_squares(q, grads, view(*norm_, Shape{1}));
  q.read(&sum, view(*norm_, Shape{1}));
  q.synchronize();
  last_grad_norm_ = std::sqrt(static_cast<double>(sum));
  // PyTorch's coefficient: max_norm / (norm + 1e-6), applied only when below 1.
  const double coefficient = max_norm / (last_grad_norm_ + 1e-6);
  if (coefficient < 1.0) kernels::scale(q, grads, static_cast<float>(coefficient));
}

EvalResult MlpTrainer::evaluate() {
  Queue& q = *queue_;
  const ImageSet& test = data_.test;
  const int64_t classes = model_->output_size();
  // Rank r evaluates the contiguous share [begin, end) of the test set.
  const int64_t begin = test.count * comm_.rank() / comm_.size();
  const int64_t end = test.count * (comm_.rank() + 1) / comm_.size();
  std::vector<int64_t> indices(static_cast<size_t>(kEvalBatch));
  std::vector<float> probs_host(static_cast<size_t>(kEvalBatch * classes));
  double correct = 0, loss_sum = 0;
  for (int64_t start = begin; start < end; start += kEvalBatch) {
    int64_t n = std::min(kEvalBatch, end - start);
    for (int64_t i = 0; i < n; ++i) indices[static_cast<size_t>(i)] = start + i;
    gather_batch(test, indices.data(), n, scale_, host_input_.data(), host_labels_.data());
    Tensor x(input_.get(), 0, Shape{n, model_->input_size()}, DType::kF32);
    Tensor labels(labels_.get(), 0, Shape{n}, DType::kI32);
    Tensor probs(probs_.get(), 0, Shape{n, classes}, DType::kF32);
    q.write(x, host_input_.data());
    q.write(labels, host_labels_.data());
    kernels::softmax_xent_forward(q, model_->forward(q, x), labels, probs, view(*loss_, Shape{1}));
    float loss = 0;
    q.read(probs_host.data(), probs);
    q.read(&loss, view(*loss_, Shape{1}));
    q.synchronize();
    loss_sum += static_cast<double>(loss) * static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = probs_host.data() + i * classes;
      int64_t best = std::max_element(row, row + classes) - row;
      correct += best == host_labels_[static_cast<size_t>(i)] ? 1 : 0;
    }
  }
  // Counts up to 10,000 are exact in f32.
  float totals[2] = {static_cast<float>(correct), static_cast<float>(loss_sum)};
  if (comm_.size() > 1) comm_.allreduce(totals, 2, DType::kF32, ReduceOp::kSum);
  EvalResult result;
  result.samples = test.count;
  result.accuracy = totals[0] / static_cast<double>(test.count);
  result.loss = totals[1] / static_cast<double>(test.count);
  return result;
}

double MlpTrainer::average_over_ranks(double value) {
  if (comm_.size() == 1) return value;
  float v = static_cast<float>(value);
  comm_.allreduce(&v, 1, DType::kF32, ReduceOp::kAverage);
  return v;
}

std::vector<float> MlpTrainer::read_params() {
  std::vector<float> host(static_cast<size_t>(model_->num_params()));
  queue_->read(host.data(), model_->params());
  queue_->synchronize();
  return host;
}

}  // namespace petaring
