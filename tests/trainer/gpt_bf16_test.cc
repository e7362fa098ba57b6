// Mixed precision (GptConfig::precision = bf16, recipe `training.precision: bf16`): one
// step's loss and gradients against the f32 model with the same weights, a short
// training run whose loss falls and tracks the f32 run, bit-exact resume through a
// checkpoint file with 2 ranks (f32 master weights, optimizer state and gradient
// allreduce), and the recipe key's errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "tests/trainer/cpu_device_test.h"
#include "runtime/error.h"
#include "trainer/checkpoint.h"
#include "trainer/data/tokens.h"
#include "trainer/gpt.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

GptConfig small_config(DType precision) {
  GptConfig c;
  c.vocab = 32;
  c.context = 24;
  c.layers = 2;
  c.heads = 2;
  c.dim = 32;
  c.precision = precision;
  return c;
}

// Text with structure a small model learns in a few dozen steps: words from a short
// list, chosen by a fixed pseudo-random sequence, as ids < 32.
std::vector<uint16_t> word_tokens(size_t count) {
  const char* words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran ", "far "};
  std::vector<uint16_t> out;
  uint32_t state = 12345;
  while (out.size() < count) {
    state = state * 1664525u + 1013904223u;
    for (const char* c = words[(state >> 16) % 10]; *c != 0 && out.size() < count; ++c) {
      out.push_back(static_cast<uint16_t>(*c == ' ' ? 0 : *c - 'a' + 1));
    }
  }
  return out;
}

class GptBf16Test : public testing_trainer::CpuDeviceTest {};

TEST_F(GptBf16Test, OneStepTracksTheF32ModelWithinBf16Tolerance) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    GptConfig c32 = small_config(DType::kF32), c16 = small_config(DType::kBF16);
    c32.tie_embeddings = c16.tie_embeddings = tied;
    const int64_t batch = 3, steps = 20;
    Gpt f32(c32, *device_, batch), bf16(c16, *device_, batch);
    EXPECT_NE(bf16.describe().find("bf16"), std::string::npos) << bf16.describe();
    f32.initialize(*queue_, 3);
    bf16.initialize(*queue_, 3);
    const std::vector<float> master(bf16.params().data<float>(),
                                    bf16.params().data<float>() + bf16.num_params());
    std::vector<int32_t> ids, next;
    const std::vector<uint16_t> text = word_tokens(batch * steps + 1);
    for (int64_t i = 0; i < batch * steps; ++i) {
      ids.push_back(text[i]);
      next.push_back(text[i + 1]);
    }
    Tensor x = tokens(ids, batch), y = tokens(next, batch);
    Tensor loss32 = f32.forward(*queue_, x, y);
    f32.backward(*queue_);
    Tensor loss16 = bf16.forward(*queue_, x, y);
    bf16.backward(*queue_);
    queue_->synchronize();
    ASSERT_EQ(bf16.params().dtype, DType::kF32);
    ASSERT_EQ(bf16.grads().dtype, DType::kF32);
    // The master weights are untouched by the bf16 forward and backward.
    EXPECT_TRUE(std::equal(master.begin(), master.end(), bf16.params().data<float>()));
    const float l32 = loss32.data<float>()[0], l16 = loss16.data<float>()[0];
    EXPECT_NEAR(l16, l32, 1e-3 * l32);
    const float* g32 = f32.grads().data<float>();
    const float* g16 = bf16.grads().data<float>();
    for (const Gpt::Named& p : bf16.named_params()) {
      double norm = 0, diff = 0;
      for (int64_t i = p.offset; i < p.offset + p.shape.numel(); ++i) {
        norm += double(g32[i]) * g32[i];
        diff += (double(g16[i]) - g32[i]) * (double(g16[i]) - g32[i]);
      }
      ASSERT_GT(norm, 0.0) << p.name;
      // bf16 keeps 8 significant bits (2^-8 relative per rounding); a few roundings
      // along each path stay well under 2% (about 0.5% measured).
      EXPECT_LT(std::sqrt(diff / norm), 2e-2) << p.name << " relative L2 error";
    }
  }
}

// Runs `world` thread-ranks of a Gpt: optionally restores `from`, takes `steps` steps,
// returns rank 0's mean losses; `*saved` gets the state after them.
std::vector<float> run(int world, const Recipe& recipe, int steps, const CheckpointState* from,
                       CheckpointState* saved) {
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
        TokenSource source("words", "test", word_tokens(6000), recipe.model.context,
                           recipe.training.seed, *device, recipe.training.batch_size);
        GptConfig config = gpt_config(recipe.model);
        config.precision = recipe.training.precision == "bf16" ? DType::kBF16 : DType::kF32;
        Gpt model(config, *device, recipe.training.batch_size);
        Trainer trainer(recipe, model, source, *device, comm);
        if (from != nullptr) trainer.restore(*from);
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

Recipe gpt_recipe(const std::string& precision) {
  Recipe recipe;
  recipe.source = "test";
  recipe.model.type = "gpt";
  recipe.model.vocab = 32;
  recipe.model.context = 24;
  recipe.model.blocks = 2;
  recipe.model.heads = 2;
  recipe.model.dim = 32;
  recipe.data.type = "tokens";
  recipe.optimizer.type = "adamw";
  recipe.optimizer.lr = 1e-2;
  recipe.optimizer.weight_decay = 0.01;
  recipe.optimizer.clip_grad_norm = 1.0;
  recipe.optimizer.schedule = "cosine";
  recipe.optimizer.warmup_steps = 3;
  recipe.training.batch_size = 8;
  recipe.training.epochs = 10;
  recipe.training.max_steps = 40;
  recipe.training.evaluate = false;
  recipe.training.precision = precision;
  return recipe;
}

double mean_of_last(const std::vector<float>& losses, size_t count) {
  double sum = 0;
  for (size_t i = losses.size() - count; i < losses.size(); ++i) sum += losses[i];
  return sum / static_cast<double>(count);
}

TEST(GptBf16TrainTest, LossFallsAndTracksTheF32Run) {
  const std::vector<float> f32 = run(1, gpt_recipe("f32"), 40, nullptr, nullptr);
  const std::vector<float> bf16 = run(1, gpt_recipe("bf16"), 40, nullptr, nullptr);
  ASSERT_EQ(bf16.size(), 40u);
  const double start = mean_of_last({bf16.begin(), bf16.begin() + 3}, 3);
  const double end16 = mean_of_last(bf16, 5), end32 = mean_of_last(f32, 5);
  EXPECT_LT(end16, 0.6 * start) << "bf16 loss did not fall: " << start << " -> " << end16;
  EXPECT_NEAR(end16, end32, 0.03 * end32) << "bf16 " << end16 << " vs f32 " << end32;
  EXPECT_NE(bf16, f32);  // it really ran in another precision
}

TEST(GptBf16TrainTest, ResumedBf16TrainingIsBitForBitTheUninterruptedRun) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("petaring_bf16_ckpt_" + std::to_string(getpid()));
  fs::remove_all(dir);
  Recipe recipe = gpt_recipe("bf16");
  recipe.training.batch_size = 4;
  recipe.training.max_steps = 10;
  CheckpointState end_full, middle, end_resumed;
  const std::vector<float> full = run(2, recipe, 10, nullptr, &end_full);
  std::vector<float> first = run(2, recipe, 4, nullptr, &middle);
  write_checkpoint(dir.string(), middle, 1);
  const CheckpointState loaded = read_checkpoint(checkpoint_path(dir.string(), 4));
  // The checkpoint holds the f32 master weights: every parameter, most of them with bits
  // below bf16's 16 (a bf16 copy would have none).
  ASSERT_FALSE(loaded.tensors.empty());
  EXPECT_EQ(loaded.tensors.front().first, "params");
  const std::vector<float>& saved_params = loaded.tensors.front().second;
  CpuDeviceOptions options;
  options.threads = 1;
  auto device = std::move(open_cpu_devices(options)[0]);
  const Gpt same_shape(gpt_config(recipe.model), *device, 1);
  EXPECT_EQ(static_cast<int64_t>(saved_params.size()), same_shape.num_params());
  const auto beyond_bf16 = std::count_if(saved_params.begin(), saved_params.end(),
                                         [](float v) { return (f32_bits(v) & 0xffffu) != 0; });
  EXPECT_GT(beyond_bf16, static_cast<long>(saved_params.size() / 2));
  const std::vector<float> rest = run(2, recipe, 6, &loaded, &end_resumed);
  first.insert(first.end(), rest.begin(), rest.end());
  ASSERT_EQ(first.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(first[i], full[i]) << "step " << i + 1;
  EXPECT_EQ(end_resumed.tensors, end_full.tensors);  // f32 master weights and AdamW moments
  fs::remove_all(dir);
}

TEST(GptBf16RecipeTest, PrecisionKeyParsesAndBadValuesNameTheLine) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("petaring_bf16_recipe_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "t.txt") << "hello";
  const std::string head =
      "model: {type: gpt, vocab: 256, context: 8, layers: 1, heads: 1, dim: 8}\n"
      "data: {type: text, path: \"" + (dir / "t.txt").string() + "\"}\n"
      "optimizer: {type: adamw, lr: 0.01}\n";
  EXPECT_EQ(parse_recipe(head + "training: {batch_size: 2}\n", "r.yaml").training.precision, "f32");
  const Recipe bf16 = parse_recipe(head + "training: {batch_size: 2, precision: bf16}\n", "r.yaml");
  EXPECT_EQ(bf16.training.precision, "bf16");
  EXPECT_NE(recipe_to_yaml(bf16).find("precision: bf16"), std::string::npos);
  EXPECT_EQ(parse_recipe(recipe_to_yaml(bf16), "again.yaml").training, bf16.training);
  try {
    parse_recipe(head + "training:\n  batch_size: 2\n  precision: fp8\n", "r.yaml");
    FAIL() << "fp8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    const std::string what = e.what();
    EXPECT_NE(what.find("r.yaml:6"), std::string::npos) << what;
    EXPECT_NE(what.find("training.precision"), std::string::npos) << what;
    EXPECT_NE(what.find("bf16"), std::string::npos) << what;
  }
  try {
    parse_recipe("model: {type: mlp, layers: [784, 10]}\ndata: {type: fashion_mnist, path: \"" +
                     dir.string() + "\"}\noptimizer: {type: sgd, lr: 0.1}\n"
                     "training: {batch_size: 2, precision: bf16}\n",
                 "mlp.yaml");
    FAIL() << "bf16 mlp accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("mlp.yaml:4"), std::string::npos) << what;
    EXPECT_NE(what.find("gpt only"), std::string::npos) << what;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace petaring
