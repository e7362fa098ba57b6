// Graceful preemption through run_training: a stop asked on one rank only stops every rank
// after the same step, with that step's checkpoint on disk and a "preempted" metrics
// record; at 1 rank the stop takes effect at the boundary where it is asked. The signal
// handlers: a first SIGTERM asks, a repeat within 1 s is the same request.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "trainer/checkpoint.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

class PreemptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("petaring_preempt_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::string text;
    for (int i = 0; i < 4000; ++i) text += "abcdefgh"[i % 8];
    std::ofstream(dir_ / "cycle.txt") << text;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Recipe recipe() const {
    const std::string yaml =
        "model: {type: gpt, vocab: 256, context: 8, layers: 1, heads: 2, dim: 8}\n"
        "data: {type: text, path: \"" + (dir_ / "cycle.txt").string() + "\"}\n"
        "optimizer: {type: adamw, lr: 0.01}\n"
        "training: {batch_size: 4, epochs: 100, max_steps: 30, log_every: 1, evaluate: false}\n"
        "checkpoint: {dir: \"" + (dir_ / "ck").string() + "\", every: 0, keep: 3}\n";
    return parse_recipe(yaml, "preempt.yaml");
  }

  // Runs `world` thread-ranks; rank `asking` asks to stop from its `ask_at`-th boundary on.
  std::vector<TrainResult> run(int world, int asking, int ask_at) {
    const Recipe r = recipe();
    auto transports = make_local_transports(world);
    std::vector<TrainResult> results(static_cast<size_t>(world));
    std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
    std::vector<std::thread> threads;
    for (int rank = 0; rank < world; ++rank) {
      threads.emplace_back([&, rank] {
        try {
          Communicator comm(std::move(transports[static_cast<size_t>(rank)]));
          CpuDeviceOptions options;
          options.threads = 1;
          auto device = std::move(open_cpu_devices(options)[0]);
          TrainOptions train_options;
          int calls = 0;
          train_options.stop_requested = [&] { return rank == asking && ++calls >= ask_at; };
          if (rank == 0) train_options.metrics_path = (dir_ / "metrics.jsonl").string();
          results[static_cast<size_t>(rank)] = run_training(r, comm, *device, train_options);
        } catch (...) {
          errors[static_cast<size_t>(rank)] = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    return results;
  }

  nlohmann::json last_record() const {
    std::ifstream metrics(dir_ / "metrics.jsonl");
    std::string line, last;
    while (std::getline(metrics, line)) last = line;
    return nlohmann::json::parse(last);
  }

  fs::path dir_;
};

TEST_F(PreemptTest, OneRankAskingStopsEveryRankAtTheSameStepWithItsCheckpoint) {
  std::vector<TrainResult> results = run(2, /*asking=*/1, /*ask_at=*/3);
  // Asked at boundary 3 on rank 1; the ranks agree one boundary later.
  for (const TrainResult& result : results) {
    EXPECT_TRUE(result.preempted);
    EXPECT_EQ(result.steps, 4);
    EXPECT_EQ(result.checkpoint, checkpoint_path((dir_ / "ck").string(), 4));
  }
  ASSERT_TRUE(fs::exists(checkpoint_path((dir_ / "ck").string(), 4)));
  EXPECT_EQ(read_checkpoint(checkpoint_path((dir_ / "ck").string(), 4)).step, 4);
  EXPECT_EQ(list_checkpoints((dir_ / "ck").string()).size(), 1u) << "no other checkpoint is written";
  const nlohmann::json record = last_record();
  EXPECT_EQ(record["event"], "preempted");
  EXPECT_EQ(record["step"], 4);
  EXPECT_EQ(record["checkpoint"], checkpoint_path((dir_ / "ck").string(), 4));
}

TEST_F(PreemptTest, AtOneRankTheStopTakesEffectWhereItIsAsked) {
  std::vector<TrainResult> results = run(1, 0, 5);
  EXPECT_TRUE(results[0].preempted);
  EXPECT_EQ(results[0].steps, 5);
  EXPECT_TRUE(fs::exists(checkpoint_path((dir_ / "ck").string(), 5)));
}

TEST_F(PreemptTest, NoStopAskedRunsToTheEnd) {
  std::vector<TrainResult> results = run(2, 0, 1000);
  for (const TrainResult& result : results) {
    EXPECT_FALSE(result.preempted);
    EXPECT_EQ(result.steps, 30);
  }
  EXPECT_EQ(last_record()["event"], "final");
}

// In a child process (the handlers are process-wide): the first SIGTERM only asks; the
// same request delivered again at once (terminal plus launcher) does not end the process.
TEST(PreemptSignalTest, FirstSignalAsksAndAnImmediateRepeatIsTheSameRequest) {
  EXPECT_EXIT(
      {
        install_preemption_handlers();
        if (preemption_requested()) std::_Exit(3);
        std::raise(SIGTERM);  // delivered to this thread before raise returns
        if (!preemption_requested()) std::_Exit(4);
        std::raise(SIGINT);
        std::raise(SIGTERM);
        std::_Exit(kPreemptedExitCode);
      },
      ::testing::ExitedWithCode(kPreemptedExitCode), "");
}

}  // namespace
}  // namespace petaring
