// Training the Fashion-MNIST MLP recipe with `devices: {kind: amd}` over the mock KFD
// reaches the accuracy the cpu backend reaches (kept short with training.max_steps).
#include <gtest/gtest.h>

#include <filesystem>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/amd/mock/mock_devices.h"
#include "device/cpu/cpu_device.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring {
namespace {

TrainResult train(const Recipe& recipe, Device& device) {
  Communicator comm(std::move(make_local_transports(1)[0]));
  return run_training(recipe, comm, device, TrainOptions{});
}

TEST(AmdTrainingTest, FashionMlpOverTheMockKfdMatchesTheCpuBackend) {
  if (amd::default_code_object_path().empty()) {
    GTEST_SKIP() << "the gfx1100 code objects were not built (clang-16 and ld.lld-16 missing)";
  }
  const std::string data = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(data)) {
    GTEST_SKIP() << data << " is absent: apt-get install dataset-fashion-mnist";
  }
  const std::string recipe_path =
      std::string(PETARING_SOURCE_DIR) + "/examples/recipes/fashion_mlp.yaml";
  const std::vector<std::string> common = {"training.max_steps=150", "training.log_every=1000",
                                           "data.path=" + data};
  std::vector<std::string> amd_overrides = common;
  amd_overrides.push_back("devices.kind=amd");
  const Recipe amd_recipe = load_recipe(recipe_path, amd_overrides);
  ASSERT_EQ(amd_recipe.devices.kind, "amd");
  const Recipe cpu_recipe = load_recipe(recipe_path, common);

  auto amd_device = std::move(amd::open_mock_amd_devices(
      std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/amd/7900xtx/sys").front());
  CpuDeviceOptions cpu_options;
  cpu_options.threads = 1;
  auto cpu_device = std::move(open_cpu_devices(cpu_options).front());

  const TrainResult on_amd = train(amd_recipe, *amd_device);
  const TrainResult on_cpu = train(cpu_recipe, *cpu_device);
  EXPECT_EQ(on_amd.steps, 150);
  EXPECT_EQ(on_cpu.steps, 150);
  EXPECT_GT(on_cpu.test_accuracy, 0.70) << "150 steps of SGD should pass 70% on Fashion-MNIST";
  // Same kernels (the mock runs the cpu backend's as twins), same order: the same model.
  EXPECT_NEAR(on_amd.test_accuracy, on_cpu.test_accuracy, 0.005);
  EXPECT_NEAR(on_amd.loss, on_cpu.loss, 1e-3);
}

}  // namespace
}  // namespace petaring
