// Fashion-MNIST as a DataSource for the MLP: samples are images, written to the device as
// f32 rows (pixel / 255, or normalized by the train set's statistics) with i32 labels.
// Split::kEval is the 10,000-image test set.
#pragma once

#include <memory>

#include "trainer/data/fashion_mnist.h"
#include "trainer/data/source.h"

namespace petaring {

class FashionMnistSource : public DataSource {
 public:
  // Takes the data set; allocates device buffers for batches of up to `max_batch` images.
  // `normalize`: the recipe's data.normalize.
  FashionMnistSource(FashionMnist data, bool normalize, Device& device, int64_t max_batch);
  ~FashionMnistSource() override;

  std::string describe() const override;
  int64_t size(Split split) const override;
  int64_t max_batch() const override { return max_batch_; }
  Batch load(Queue& q, Split split, int64_t epoch, const int64_t* indices, int64_t n) override;

  int64_t pixels() const { return data_.train.pixels; }

 private:
  // Host staging for one batch. Two slots alternate, so that gathering the next batch
  // does not wait for the device to have read the previous one.
  struct Staging {
    std::vector<float> pixels;    // (max_batch, pixels)
    std::vector<int32_t> labels;  // (max_batch)
    std::unique_ptr<Event> written;  // the last write from this slot
  };

  FashionMnist data_;
  PixelScale scale_;
  int64_t max_batch_;
  std::unique_ptr<Buffer> inputs_, labels_;
  Staging staging_[2];
  int next_slot_ = 0;
};

}  // namespace petaring
