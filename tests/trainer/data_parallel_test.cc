// Data-parallel equivalence: W ranks at batch B end with the same parameters as one rank
// at batch W*B. Ranks are threads over the in-process transport, each with its own
// virtual GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "trainer/data/fashion_source.h"
#include "trainer/grad_sync.h"
#include "trainer/mlp.h"
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
  recipe.training.epochs = 2;
  recipe.training.seed = 0;
  return recipe;
}

// AdamW with decoupled weight decay, clipping by global norm (tight enough to clip most
// steps) and a warmup + cosine schedule over the 20 steps of two epochs.
Recipe adamw_recipe(int64_t batch) {
  Recipe recipe = small_recipe(batch);
  recipe.optimizer.type = "adamw";
  recipe.optimizer.lr = 2e-3;
  recipe.optimizer.momentum = 0;
  recipe.optimizer.weight_decay = 1e-2;
  recipe.optimizer.clip_grad_norm = 0.5;
  recipe.optimizer.schedule = "cosine";
  recipe.optimizer.warmup_steps = 4;
  recipe.optimizer.min_lr = 1e-4;
  recipe.training.epochs = 2;
  return recipe;
}

// Trains `steps` global steps on `world` thread-ranks; returns rank 0's parameters and
// checks that every rank holds the same ones. `grad_norms` (optional) gets rank 0's
// pre-clipping norm of every step.
std::vector<float> train_ranks(const FashionMnist& data, int world, const Recipe& recipe,
                               int steps, double* first_loss, double* last_loss,
                               std::vector<double>* grad_norms = nullptr) {
  auto transports = make_local_transports(world);
  std::vector<std::vector<float>> params(static_cast<size_t>(world));
  std::vector<double> losses(2, 0.0);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        Communicator comm(std::move(transports[static_cast<size_t>(r)]));
        CpuDeviceOptions options;
        options.threads = 1;
        auto device = std::move(open_cpu_devices(options)[0]);
        FashionMnistSource source(data, false, *device, 500);
        Mlp model(recipe.model, *device, 500);
        Trainer trainer(recipe, model, source, *device, comm);
        for (int s = 0; s < steps; ++s) {
          double loss = trainer.average_over_ranks(trainer.step());
          if (r == 0 && s == 0) losses[0] = loss;
          if (r == 0 && s == steps - 1) losses[1] = loss;
          if (r == 0 && grad_norms != nullptr) grad_norms->push_back(trainer.last_grad_norm());
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

// The largest parameter difference, relative to the largest parameter (at least 1).
double relative_difference(const std::vector<float>& one, const std::vector<float>& two) {
  EXPECT_EQ(one.size(), two.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < one.size() && i < two.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(one[i] - two[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(one[i])));
  }
  return max_diff / std::max(1.0, max_abs);
}

TEST(DataParallelTest, TwoRanksAtHalfBatchMatchOneRankAfter20Steps) {
  // 640 images: 10 global batches of 64 per epoch, so 20 steps cross an epoch boundary.
  FashionMnist data = synthetic_data(640, 100);
  double first1, last1, first2, last2;
  std::vector<float> one = train_ranks(data, 1, small_recipe(64), 20, &first1, &last1);
  std::vector<float> two = train_ranks(data, 2, small_recipe(32), 20, &first2, &last2);
  EXPECT_LT(relative_difference(one, two), 1e-5);
  EXPECT_NEAR(first1, first2, 1e-5);
  EXPECT_NEAR(last1, last2, 1e-4);
  EXPECT_LT(last1, first1) << "training did not reduce the loss";
}

TEST(DataParallelTest, AdamwWithClippingAndCosineMatchesOneRank) {
  FashionMnist data = synthetic_data(640, 100);
  double first1, last1, first2, last2;
  std::vector<double> norms1, norms2;
  std::vector<float> one =
      train_ranks(data, 1, adamw_recipe(64), 20, &first1, &last1, &norms1);
  std::vector<float> two =
      train_ranks(data, 2, adamw_recipe(32), 20, &first2, &last2, &norms2);
  // Adam normalizes each update, so f32 rounding differences in the gradient matter more
  // than with SGD; they stay far below the size of one step (lr 2e-3).
  EXPECT_LT(relative_difference(one, two), 2e-5);
  EXPECT_NEAR(first1, first2, 1e-5);
  EXPECT_NEAR(last1, last2, 1e-4);
  EXPECT_LT(last1, first1) << "training did not reduce the loss";
  ASSERT_EQ(norms1.size(), 20u);
  ASSERT_EQ(norms2.size(), 20u);
  int clipped = 0;
  for (size_t i = 0; i < norms1.size(); ++i) {
    EXPECT_NEAR(norms1[i], norms2[i], 1e-4 * norms1[i]) << "step " << i;
    clipped += norms1[i] > 0.5 ? 1 : 0;
  }
  EXPECT_GT(clipped, 0) << "no step was clipped; the test no longer covers clipping";
}

TEST(DataParallelTest, AccumulatingTwoMicroBatchesMatchesTheDoubleBatch) {
  FashionMnist data = synthetic_data(640, 100);
  double first1, last1, first2, last2, first3, last3;
  Recipe accumulated = small_recipe(32);
  accumulated.training.grad_accum_steps = 2;
  std::vector<float> one = train_ranks(data, 1, small_recipe(64), 20, &first1, &last1);
  std::vector<float> micro = train_ranks(data, 1, accumulated, 20, &first2, &last2);
  EXPECT_LT(relative_difference(one, micro), 1e-5);
  EXPECT_NEAR(first1, first2, 1e-5);
  EXPECT_NEAR(last1, last2, 1e-4);
  // 2 ranks x 2 micro-batches of 16: the same 64 samples per step.
  accumulated.training.batch_size = 16;
  std::vector<float> both = train_ranks(data, 2, accumulated, 20, &first3, &last3);
  EXPECT_LT(relative_difference(one, both), 1e-5);
  EXPECT_NEAR(last1, last3, 1e-4);
}

TEST(DataParallelTest, SmallBucketsGiveTheSameParametersAsOneBucket) {
  FashionMnist data = synthetic_data(640, 100);
  double first1, last1, first2, last2;
  Recipe one_bucket = small_recipe(32);
  Recipe small_buckets = small_recipe(32);
  // 1 KiB: [b2, W2, b1, W1] and [b0, W0] for the 784-32-16-10 MLP.
  small_buckets.training.bucket_mb = 1.0 / 1024;
  std::vector<float> a = train_ranks(data, 2, one_bucket, 12, &first1, &last1);
  std::vector<float> b = train_ranks(data, 2, small_buckets, 12, &first2, &last2);
  // Two ranks: a + b rounds the same whatever the bucket, so the runs agree exactly.
  EXPECT_EQ(a, b);
  EXPECT_EQ(last1, last2);
}

TEST(GradientSyncTest, BucketsFollowBackwardOrderWithASmallFirstBucket) {
  auto transports = make_local_transports(1);
  Communicator comm(std::move(transports[0]));
  auto device = std::move(open_cpu_devices(CpuDeviceOptions{})[0]);
  auto queue = device->create_queue(QueueKind::kCompute);
  // 4 MiB of gradients as tensors of 0.75 MiB, reported from the end of the buffer.
  const int64_t tensor = 3 << 16;  // 196608 floats = 0.75 MiB
  auto buffer = device->allocate(static_cast<size_t>(6 * tensor) * sizeof(float));
  Tensor grads(buffer.get(), 0, Shape{6 * tensor}, DType::kF32);
  GradientSync sync(comm, grads, 2.0);  // 2 MiB buckets
  sync.begin(*queue);
  GradReadyFn ready = sync.callback();
  for (int64_t t = 5; t >= 0; --t) ready(t * tensor, tensor, std::shared_ptr<Event>(queue->record()));
  sync.end_backward();
  SyncStats stats = sync.wait();
  // A bucket closes once it holds at least its cap: the first (cap 1 MiB) after 2 tensors
  // (1.5 MiB), the next (cap 2 MiB) after 3 (2.25 MiB); end_backward closes the rest.
  EXPECT_EQ(sync.bucket_sizes(), (std::vector<int64_t>{2 * tensor, 3 * tensor, tensor}));
  EXPECT_EQ(stats.buckets, 3);
}

TEST(GradientSyncTest, ABucketWaitsUntilItsGradientsFormOneSlice) {
  auto transports = make_local_transports(1);
  Communicator comm(std::move(transports[0]));
  auto device = std::move(open_cpu_devices(CpuDeviceOptions{})[0]);
  auto queue = device->create_queue(QueueKind::kCompute);
  const int64_t tensor = 3 << 16;  // 0.75 MiB
  auto buffer = device->allocate(static_cast<size_t>(6 * tensor) * sizeof(float));
  Tensor grads(buffer.get(), 0, Shape{6 * tensor}, DType::kF32);
  GradientSync sync(comm, grads, 2.0);
  sync.begin(*queue);
  GradReadyFn ready = sync.callback();
  // Weights before their biases, as a layer's backward may report them: t4 t5 | t2 t3 t0 t1.
  for (int64_t t : {4, 5, 2, 3, 0, 1}) ready(t * tensor, tensor, std::shared_ptr<Event>(queue->record()));
  sync.end_backward();
  sync.wait();
  // [t4, t5] reaches 1 MiB; t2 t3 (1.5 MiB) and t0 are two slices until t1 joins them.
  EXPECT_EQ(sync.bucket_sizes(), (std::vector<int64_t>{2 * tensor, 4 * tensor}));
}

TEST(SamplerTest, StepsFollowTheGlobalSampleIndexWhateverTheWorldSize) {
  Sampler sampler(5, 100);
  DataPosition start{2, 40};
  // One rank x 4 micro-batches of 5 == 2 ranks x 2 micro-batches of 5 == 4 ranks x 1.
  auto gather = [&](int world, int64_t micro_batches) {
    std::vector<int64_t> all;
    for (int64_t m = 0; m < micro_batches; ++m) {
      for (int r = 0; r < world; ++r) {
        auto part = sampler.indices(start, 5, world, micro_batches, m, r);
        all.insert(all.end(), part.begin(), part.end());
      }
    }
    return all;
  };
  std::vector<int64_t> one = gather(1, 4);
  EXPECT_EQ(one.size(), 20u);
  EXPECT_EQ(one, gather(2, 2));
  EXPECT_EQ(one, gather(4, 1));
  // A different epoch shuffles differently; the same epoch the same way.
  EXPECT_NE(one, Sampler(5, 100).indices(DataPosition{3, 40}, 20, 1, 1, 0, 0));
  EXPECT_EQ(one, Sampler(5, 100).indices(start, 20, 1, 1, 0, 0));
  // 100 samples, steps of 20 from 40: 3 full steps left; then the next epoch.
  EXPECT_EQ(sampler.steps_left_in_epoch(start, 20), 3);
  EXPECT_EQ(sampler.advance(start, 20), (DataPosition{2, 60}));
  EXPECT_EQ(sampler.advance(DataPosition{2, 80}, 20), (DataPosition{3, 0}));
  EXPECT_EQ(sampler.advance(DataPosition{2, 60}, 30), (DataPosition{3, 0}));  // 10 left over
}

TEST(DataParallelTest, ThreeRanksAgreeWithEachOther) {
  FashionMnist data = synthetic_data(600, 60);
  double first, last;
  train_ranks(data, 3, small_recipe(16), 12, &first, &last);  // rank agreement is checked inside
  EXPECT_TRUE(std::isfinite(last));
}

}  // namespace
}  // namespace petaring
