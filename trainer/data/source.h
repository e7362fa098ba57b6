// Data for the training loop, read this first:
//   DataSource     a data set addressed by sample index: loads chosen samples to the device
//   DataPosition   where the run is in the data (epoch, samples consumed): checkpointable
//   Sampler        the order: which global sample indices make up each micro-batch
//
// Sharding follows the global sample index, never the rank: epoch e visits the training
// samples in the order permutation(mix(seed, e)) (trainer/rng.h); a step consumes the
// next G = batch_size * world * micro_batches positions of that order, micro-batch m of
// rank r taking positions [(m * world + r) * B, + B) of them. An epoch ends when fewer
// than G positions are left (the remainder is dropped). So the samples of a step depend
// only on (seed, epoch, position, G), and a run resumed at another world size carries on
// from the same position in the same order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "device/device.h"
#include "trainer/model.h"

namespace petaring {

enum class Split { kTrain, kEval };

class DataSource {
 public:
  DataSource() = default;
  DataSource(const DataSource&) = delete;
  DataSource& operator=(const DataSource&) = delete;
  virtual ~DataSource() = default;

  // "fashion_mnist (60000 train, 10000 test)", for logs.
  virtual std::string describe() const = 0;
  // Samples in a split (train: what the Sampler permutes; eval: 0 when there is none).
  virtual int64_t size(Split split) const = 0;
  // What Batch::items counts per sample: 1 for images, T for a text window.
  virtual int64_t items_per_sample() const { return 1; }
  // "samples" or "tokens": the unit of Batch::items in progress lines and metrics.
  virtual std::string item_unit() const { return "samples"; }
  // The largest `n` load() accepts (set at construction).
  virtual int64_t max_batch() const = 0;

  // Writes samples indices[0..n) of `split` to the device on `q` (asynchronously) and
  // returns views of them, valid until the next load; n <= max_batch(). `epoch` lets a source vary what a sample index
  // means per epoch (e.g. a random window offset); it must be a pure function of
  // (seed, epoch, index).
  virtual Batch load(Queue& q, Split split, int64_t epoch, const int64_t* indices, int64_t n) = 0;
};

// Where a run stands in its data. `sample` positions of epoch `epoch`'s order have been
// consumed.
struct DataPosition {
  int64_t epoch = 0;
  int64_t sample = 0;
  bool operator==(const DataPosition&) const = default;
};

class Sampler {
 public:
  // `dataset_size` training samples, shuffled per epoch by `seed`.
  Sampler(uint64_t seed, int64_t dataset_size);

  // The indices of micro-batch `micro` of `rank` in the step that starts at `position`
  // (`per_rank` samples each; `world` ranks; `micro_batches` per step): see the header.
  // Moves nothing. Requires fits(position, global batch).
  std::vector<int64_t> indices(const DataPosition& position, int64_t per_rank, int world,
                               int64_t micro_batches, int64_t micro, int rank);
  // Whether a step of `global_batch` samples fits in the rest of position's epoch.
  bool fits(const DataPosition& position, int64_t global_batch) const {
    return position.sample + global_batch <= size_;
  }
  // The position after one step of `global_batch` from `position`, or the start of the
  // next epoch when that step would not fit.
  DataPosition advance(DataPosition position, int64_t global_batch) const;
  // Full steps of `global_batch` left in position's epoch.
  int64_t steps_left_in_epoch(const DataPosition& position, int64_t global_batch) const {
    return (size_ - position.sample) / global_batch;
  }
  int64_t dataset_size() const { return size_; }

 private:
  const std::vector<int64_t>& order(int64_t epoch);

  uint64_t seed_;
  int64_t size_;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace petaring
