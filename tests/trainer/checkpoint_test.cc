// Checkpoints: the file round trip, atomic writes and pruning, corruption and truncation
// found by the checksum with the previous checkpoint used instead, and Trainer state that
// resumes bit for bit (same world size) or at another world size.
#include "trainer/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "runtime/error.h"
#include "trainer/data/fashion_source.h"
#include "trainer/mlp.h"
#include "trainer/rng.h"
#include "trainer/train.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            ("petaring_ckpt_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

CheckpointState sample_state(int64_t step) {
  CheckpointState state;
  state.step = step;
  state.position = DataPosition{1, 96};
  state.seed = 7;
  state.world_size = 2;
  state.global_batch = 32;
  state.total_steps = 100;
  state.recipe_hash = "abc";
  state.recipe_yaml = "model: {}\n";
  state.model = "mlp 4-3";
  state.rng_state = "rng";
  state.tensors = {{"params", {1.5f, -2.0f, 3.25f}}, {"velocity", {0.0f, 1e-30f, -0.0f}}};
  return state;
}

TEST_F(CheckpointTest, RoundTripsEveryField) {
  write_checkpoint(dir_, sample_state(12), 3);
  CheckpointState back = read_checkpoint(checkpoint_path(dir_, 12));
  CheckpointState want = sample_state(12);
  EXPECT_EQ(back.step, 12);
  EXPECT_EQ(back.position, want.position);
  EXPECT_EQ(back.seed, want.seed);
  EXPECT_EQ(back.world_size, 2);
  EXPECT_EQ(back.global_batch, 32);
  EXPECT_EQ(back.total_steps, 100);
  EXPECT_EQ(back.recipe_hash, "abc");
  EXPECT_EQ(back.recipe_yaml, want.recipe_yaml);
  EXPECT_EQ(back.model, want.model);
  EXPECT_EQ(back.rng_state, "rng");
  EXPECT_EQ(back.tensors, want.tensors);
  EXPECT_FALSE(fs::exists(checkpoint_path(dir_, 12) + ".tmp")) << "temporary left behind";
}

TEST_F(CheckpointTest, KeepsTheNewestK) {
  for (int64_t step : {10, 20, 30, 40}) write_checkpoint(dir_, sample_state(step), 2);
  std::ofstream(fs::path(dir_) / "step-00000050.ckpt.tmp") << "a crashed write";
  EXPECT_EQ(list_checkpoints(dir_),
            (std::vector<std::string>{checkpoint_path(dir_, 30), checkpoint_path(dir_, 40)}));
}

TEST_F(CheckpointTest, CorruptionAndTruncationAreFoundAndThePreviousOneIsUsed) {
  for (int64_t step : {10, 20, 30}) write_checkpoint(dir_, sample_state(step), 5);
  const std::string newest = checkpoint_path(dir_, 30), middle = checkpoint_path(dir_, 20);
  // Flip one byte of a tensor in the newest.
  {
    std::fstream file(newest, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-40, std::ios::end);
    char c;
    file.seekg(-40, std::ios::end);
    file.get(c);
    file.seekp(-40, std::ios::end);
    file.put(static_cast<char>(c ^ 0x10));
  }
  try {
    read_checkpoint(newest);
    ADD_FAILURE() << "a corrupted checkpoint was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find(newest), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  std::string used;
  EXPECT_EQ(read_latest_checkpoint(dir_, &used).step, 20);
  EXPECT_EQ(used, middle);
  // Truncate the middle one too: the oldest is next.
  fs::resize_file(middle, fs::file_size(middle) - 100);
  EXPECT_THROW(read_checkpoint(middle), Error);
  EXPECT_EQ(read_latest_checkpoint(dir_, &used).step, 10);
  fs::resize_file(checkpoint_path(dir_, 10), 10);
  try {
    read_latest_checkpoint(dir_, &used);
    ADD_FAILURE() << "no usable checkpoint, yet one was returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find(newest), std::string::npos) << e.what();
  }
}

// Synthetic images whose labels depend on the pixels.
FashionMnist synthetic_data() {
  FashionMnist data;
  Rng rng(5);
  for (ImageSet* set : {&data.train, &data.test}) {
    set->count = set == &data.train ? 512 : 20;
    set->pixels = 784;
    set->images.resize(static_cast<size_t>(set->count * 784));
    set->labels.resize(static_cast<size_t>(set->count));
    for (int64_t i = 0; i < set->count; ++i) {
      const int32_t label = static_cast<int32_t>(rng.below(10));
      set->labels[static_cast<size_t>(i)] = label;
      for (int64_t p = 0; p < 784; ++p) {
        set->images[static_cast<size_t>(i * 784 + p)] = static_cast<uint8_t>(rng.below(p % 10 == label ? 256 : 96));
      }
    }
  }
  return data;
}

Recipe adamw_recipe(int64_t batch) {
  Recipe recipe;
  recipe.source = "test";
  recipe.model.layers = {784, 16, 10};
  recipe.optimizer.type = "adamw";
  recipe.optimizer.lr = 3e-3;
  recipe.optimizer.weight_decay = 0.01;
  recipe.optimizer.clip_grad_norm = 1.0;
  recipe.optimizer.schedule = "cosine";
  recipe.optimizer.warmup_steps = 2;
  recipe.training.batch_size = batch;
  recipe.training.epochs = 2;
  recipe.training.max_steps = 12;
  return recipe;
}

// Runs `world` thread-ranks: optionally restores `from`, takes `steps` steps, returns
// rank 0's mean losses; `*saved` gets the state after them, `*changes` what restore said.
std::vector<float> run(int world, const Recipe& recipe, const FashionMnist& data, int steps,
                       const CheckpointState* from, CheckpointState* saved,
                       std::vector<std::string>* changes = nullptr) {
  auto transports = make_local_transports(world);
  std::vector<float> losses;
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        Communicator comm(std::move(transports[static_cast<size_t>(r)]));
        CpuDeviceOptions options;
        options.threads = 1;
        auto device = std::move(open_cpu_devices(options)[0]);
        FashionMnistSource source(data, false, *device, 64);
        Mlp model(recipe.model, *device, 64);
        Trainer trainer(recipe, model, source, *device, comm);
        if (from != nullptr) {
          std::vector<std::string> said = trainer.restore(*from);
          if (r == 0 && changes != nullptr) *changes = said;
        }
        for (int s = 0; s < steps; ++s) {
          const float loss = static_cast<float>(trainer.average_over_ranks(trainer.step()));
          if (r == 0) losses.push_back(loss);
        }
        if (r == 0 && saved != nullptr) *saved = trainer.save_state();
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return losses;
}

TEST_F(CheckpointTest, ResumedTrainingIsBitForBitTheUninterruptedRun) {
  const FashionMnist data = synthetic_data();
  const Recipe recipe = adamw_recipe(16);  // 2 ranks x 16: 16 steps per epoch
  CheckpointState end_full, middle, end_resumed;
  std::vector<float> full = run(2, recipe, data, 12, nullptr, &end_full);
  std::vector<float> first = run(2, recipe, data, 5, nullptr, &middle);
  // Through a file, as a real resume would.
  write_checkpoint(dir_, middle, 1);
  CheckpointState loaded = read_checkpoint(checkpoint_path(dir_, 5));
  std::vector<std::string> changes;
  std::vector<float> rest = run(2, recipe, data, 7, &loaded, &end_resumed, &changes);
  EXPECT_TRUE(changes.empty()) << changes.front();
  first.insert(first.end(), rest.begin(), rest.end());
  ASSERT_EQ(first.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(first[i], full[i]) << "step " << i + 1;
  EXPECT_EQ(end_resumed.tensors, end_full.tensors);  // parameters and AdamW moments
  EXPECT_EQ(end_resumed.position, end_full.position);
}

TEST_F(CheckpointTest, ResumesAtAnotherWorldSizeAndSaysWhatChanged) {
  const FashionMnist data = synthetic_data();
  CheckpointState middle, end_two, end_one;
  std::vector<float> two = run(2, adamw_recipe(16), data, 12, nullptr, &end_two);
  run(2, adamw_recipe(16), data, 5, nullptr, &middle);
  // One rank at batch 32 takes the same 32 samples per step as 2 x 16.
  std::vector<std::string> changes;
  std::vector<float> one = run(1, adamw_recipe(32), data, 7, &middle, &end_one, &changes);
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.front(), "world size 2 -> 1");
  EXPECT_EQ(end_one.position, end_two.position);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(one[i], two[5 + i], 1e-4) << "step " << 6 + i;
  // At 1 rank x 16 the global batch halves: said, and the step count is recounted.
  run(1, adamw_recipe(16), data, 1, &middle, nullptr, &changes);
  EXPECT_EQ(changes, (std::vector<std::string>{"world size 2 -> 1", "global batch 32 -> 16"}));
}

TEST_F(CheckpointTest, AnotherOptimizerIsRefused) {
  const FashionMnist data = synthetic_data();
  CheckpointState middle;
  run(1, adamw_recipe(16), data, 2, nullptr, &middle);
  Recipe sgd = adamw_recipe(16);
  sgd.optimizer.type = "sgd";
  try {
    run(1, sgd, data, 1, &middle, nullptr);
    ADD_FAILURE() << "an adamw checkpoint was restored into sgd";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find("velocity"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace petaring
