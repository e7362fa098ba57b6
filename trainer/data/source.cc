#include "trainer/data/source.h"

#include "runtime/check.h"
#include "trainer/rng.h"

namespace petaring {

Sampler::Sampler(uint64_t seed, int64_t dataset_size) : seed_(seed), size_(dataset_size) {
  PR_CHECK_GT(dataset_size, 0);
}

const std::vector<int64_t>& Sampler::order(int64_t epoch) {
  if (epoch != order_epoch_) {
    Rng rng(Rng::mix(seed_, static_cast<uint64_t>(epoch)));
    order_ = rng.permutation(size_);
    order_epoch_ = epoch;
  }
  return order_;
}

std::vector<int64_t> Sampler::indices(const DataPosition& position, int64_t per_rank, int world,
                                      int64_t micro_batches, int64_t micro, int rank) {
  const int64_t global_batch = per_rank * world * micro_batches;
  PR_CHECK(fits(position, global_batch)) << "step of " << global_batch << " at sample "
                                         << position.sample << " of " << size_;
  PR_CHECK(micro >= 0 && micro < micro_batches && rank >= 0 && rank < world);
  const std::vector<int64_t>& shuffled = order(position.epoch);
  const int64_t first = position.sample + (micro * world + rank) * per_rank;
  return std::vector<int64_t>(shuffled.begin() + first, shuffled.begin() + first + per_rank);
}

DataPosition Sampler::advance(DataPosition position, int64_t global_batch) const {
  position.sample += global_batch;
  if (!fits(position, global_batch)) position = DataPosition{position.epoch + 1, 0};
  return position;
}

}  // namespace petaring
