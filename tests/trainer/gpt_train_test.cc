// The GPT and the text source through the whole training path (recipe -> factory ->
// Trainer -> run_training): a tiny model learns a text whose next byte is predictable,
// its loss ending far below the text's unigram entropy, which the final metrics record
// reports.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

TEST(GptTrainTest, LearnsATextFarBelowItsUnigramEntropy) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("petaring_gpt_train_" + std::to_string(getpid()));
  fs::create_directories(dir);
  // 8 symbols cycling: unigram entropy log(8) = 2.08 nats, next byte fully determined.
  std::string text;
  for (int i = 0; i < 4000; ++i) text += "abcdefgh"[i % 8];
  std::ofstream(dir / "cycle.txt") << text;
  const std::string yaml =
      "model: {type: gpt, vocab: 256, context: 16, layers: 1, heads: 2, dim: 16}\n"
      "data: {type: text, path: \"" + (dir / "cycle.txt").string() + "\"}\n"
      "optimizer: {type: adamw, lr: 0.01}\n"
      "training: {batch_size: 8, epochs: 100, max_steps: 60, log_every: 60, evaluate: false}\n";
  Recipe recipe = parse_recipe(yaml, "cycle.yaml");
  auto transports = make_local_transports(1);
  Communicator comm(std::move(transports[0]));
  CpuDeviceOptions options;
  options.threads = 1;
  auto device = std::move(open_cpu_devices(options)[0]);
  TrainOptions train_options;
  train_options.metrics_path = (dir / "metrics.jsonl").string();
  TrainResult result = run_training(recipe, comm, *device, train_options);
  EXPECT_EQ(result.steps, 60);
  EXPECT_LT(result.loss, 0.5) << "the loss did not fall well below log(8) = 2.08";

  std::ifstream metrics(train_options.metrics_path);
  std::string line, last;
  while (std::getline(metrics, line)) last = line;
  const nlohmann::json final_record = nlohmann::json::parse(last);
  EXPECT_EQ(final_record["event"], "final");
  EXPECT_NEAR(final_record["unigram_entropy"].get<double>(), std::log(8.0), 1e-3);
  EXPECT_GT(final_record["tokens_per_s"].get<double>(), 0.0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace petaring
