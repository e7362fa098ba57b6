#include "trainer/data/fashion_source.h"

#include "runtime/error.h"

namespace petaring {

FashionMnistSource::FashionMnistSource(FashionMnist data, bool normalize, Device& device,
                                       int64_t max_batch)
    : data_(std::move(data)), max_batch_(max_batch) {
  PR_CHECK_GT(max_batch, 0);
  if (normalize) scale_ = pixel_statistics(data_.train);
  const int64_t pixels = data_.train.pixels;
  inputs_ = device.allocate(static_cast<size_t>(max_batch * pixels) * sizeof(float));
  labels_ = device.allocate(static_cast<size_t>(max_batch) * sizeof(int32_t));
  for (Staging& slot : staging_) {
    slot.pixels.resize(static_cast<size_t>(max_batch * pixels));
    slot.labels.resize(static_cast<size_t>(max_batch));
  }
}

FashionMnistSource::~FashionMnistSource() {
  for (Staging& slot : staging_) {
    if (slot.written) slot.written->wait();  // the queue may still read the staging memory
  }
}

std::string FashionMnistSource::describe() const {
  return str_cat("fashion_mnist (", data_.train.count, " train, ", data_.test.count, " test images)");
}

int64_t FashionMnistSource::size(Split split) const {
  return split == Split::kTrain ? data_.train.count : data_.test.count;
}

Batch FashionMnistSource::load(Queue& q, Split split, int64_t /*epoch*/, const int64_t* indices,
                               int64_t n) {
  PR_CHECK(n > 0 && n <= max_batch_) << "batch of " << n << ", at most " << max_batch_;
  const ImageSet& set = split == Split::kTrain ? data_.train : data_.test;
  Staging& slot = staging_[next_slot_];
  next_slot_ = 1 - next_slot_;
  if (slot.written) slot.written->wait();
  gather_batch(set, indices, n, scale_, slot.pixels.data(), slot.labels.data());
  Batch batch;
  batch.inputs = Tensor(inputs_.get(), 0, Shape{n, set.pixels}, DType::kF32);
  batch.targets = Tensor(labels_.get(), 0, Shape{n}, DType::kI32);
  batch.samples = n;
  batch.items = n;
  q.write(batch.inputs, slot.pixels.data());
  q.write(batch.targets, slot.labels.data());
  slot.written = q.record();
  return batch;
}

}  // namespace petaring
