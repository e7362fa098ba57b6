// Data-parallel equivalence: W ranks at batch B end with the same parameters as one rank
// at batch W*B. Ranks are threads over the in-process transport, each with its own
// virtual GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "trainer/rng.h"
#include "trainer/train.h"

namespace petaring {
namespace {

// A small synthetic stand-in for Fashion-MNIST: random pixels, labels that depend on
// them (so the loss can fall).
FashionMnist synthetic_data(int64_t train_count, int64_t test_count) {
  FashionMnist data;
  Rng rng(11);
  for (ImageSet* set : {&data.train, &data.test}) {
    set->count = set == &data.train ? train_count : test_count;
    set->pixels = 784;
    set->images.resize(static_cast<size_t>(set->count * set->pixels));
    set->labels.resize(static_cast<size_t>(set->count));
    for (int64_t i = 0; i < set->count; ++i) {
      int32_t label = static_cast<int32_t>(rng.below(10));
      set->labels[static_cast<size_t>(i)] = label;
      for (int64_t p = 0; p < set->pixels; ++p) {
        bool hot = p % 10 == label;
        set->images[static_cast<size_t>(i * set->pixels + p)] =
            static_cast<uint8_t>(rng.below(hot ? 256 : 96));
      }
    }
  }
  return data;
}

Recipe small_recipe(int64_t batch) {
  Recipe recipe;
  recipe.source = "test";
  recipe.model.layers = {784, 32, 16, 10};
  recipe.optimizer.lr = 0.05;
  recipe.optimizer.momentum = 0.9;
  recipe.optimizer.weight_decay = 1e-4;
  recipe.training.batch_size = batch;
  recipe.training.seed = 0;
  return recipe;
}

// Trains `steps` global steps on `world` thread-ranks; returns rank 0's parameters and
// checks that every rank holds the same ones.
std::vector<float> train_ranks(const FashionMnist& data, int world, int64_t batch, int steps,
                               double* first_loss, double* last_loss) {
  auto transports = make_local_transports(world);
  std::vector<std::vector<float>> params(static_cast<size_t>(world));
  std::vector<double> losses(2, 0.0);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  const Recipe recipe = small_recipe(batch);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        Communicator comm(std::move(transports[static_cast<size_t>(r)]));
        CpuDeviceOptions options;
        options.threads = 1;
        auto device = std::move(open_cpu_devices(options)[0]);
        MlpTrainer trainer(recipe, data, *device, comm);
        for (int s = 0, epoch = -1; s < steps; ++s) {
          int64_t in_epoch = s % trainer.steps_per_epoch();
          if (in_epoch == 0) trainer.begin_epoch(++epoch);
          double loss = trainer.average_over_ranks(trainer.step(in_epoch));
          if (r == 0 && s == 0) losses[0] = loss;
          if (r == 0 && s == steps - 1) losses[1] = loss;
        }
        params[static_cast<size_t>(r)] = trainer.read_params();
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  for (int r = 1; r < world; ++r) EXPECT_EQ(params[0], params[static_cast<size_t>(r)]) << "rank " << r;
  *first_loss = losses[0];
  *last_loss = losses[1];
  return params[0];
}

TEST(DataParallelTest, TwoRanksAtHalfBatchMatchOneRankAfter20Steps) {
  // 640 images: 10 global batches of 64 per epoch, so 20 steps cross an epoch boundary.
  FashionMnist data = synthetic_data(640, 100);
  double first1, last1, first2, last2;
  std::vector<float> one = train_ranks(data, 1, 64, 20, &first1, &last1);
  std::vector<float> two = train_ranks(data, 2, 32, 20, &first2, &last2);
  ASSERT_EQ(one.size(), two.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(one[i] - two[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(one[i])));
  }
  EXPECT_LT(max_diff, 1e-5 * std::max(1.0, max_abs)) << "largest parameter " << max_abs;
  EXPECT_NEAR(first1, first2, 1e-5);
  EXPECT_NEAR(last1, last2, 1e-4);
  EXPECT_LT(last1, first1) << "training did not reduce the loss";
}

TEST(DataParallelTest, ThreeRanksAgreeWithEachOther) {
  FashionMnist data = synthetic_data(600, 60);
  double first, last;
  train_ranks(data, 3, 16, 12, &first, &last);  // rank agreement is checked inside
  EXPECT_TRUE(std::isfinite(last));
}

}  // namespace
}  // namespace petaring
