// The collectives section of a recipe: collectives.{timeout_s, transport, hierarchical}
// (parse, defaults, errors naming file:line and YAML path, YAML round trip).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "trainer/recipe.h"
#include "tests/trainer/recipe_errors.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

// A recipe text whose data folder holds the four (fake) Fashion-MNIST files.
std::string recipe_text(const std::string& extra) {
  static const fs::path folder = [] {
    fs::path path = fs::path(::testing::TempDir()) /
                    ("petaring_collectives_keys_" + std::to_string(getpid()));
    fs::create_directories(path);
    for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
      std::ofstream(path / name) << "x";
    }
    return path;
  }();
  return "model: {type: mlp, layers: [784, 10]}\n"
         "data: {type: fashion_mnist, path: \"" + folder.string() + "\"}\n"
         "optimizer: {type: sgd, lr: 0.1}\n"
         "training:\n  batch_size: 8\n" + extra;
}

TEST(RecipeCollectivesTest, DefaultsAre300SecondsAutoAuto) {
  Recipe recipe = parse_recipe(recipe_text(""), "r.yaml");
  EXPECT_DOUBLE_EQ(recipe.collectives.timeout_s, 300);
  EXPECT_EQ(recipe.collectives.transport, "auto");
  EXPECT_EQ(recipe.collectives.hierarchical, "auto");
}

TEST(RecipeCollectivesTest, KeysParseAndRoundTrip) {
  Recipe recipe = parse_recipe(
      recipe_text("collectives:\n  timeout_s: 2.5\n  transport: tcp\n  hierarchical: off\n"),
      "r.yaml");
  EXPECT_DOUBLE_EQ(recipe.collectives.timeout_s, 2.5);
  EXPECT_EQ(recipe.collectives.transport, "tcp");
  EXPECT_EQ(recipe.collectives.hierarchical, "off");
  Recipe again = parse_recipe(recipe_to_yaml(recipe), "r.yaml");
  again.source = recipe.source;
  EXPECT_EQ(again, recipe);
}

TEST(RecipeCollectivesTest, OverridesSetTheKeys) {
  Recipe recipe = parse_recipe(recipe_text(""), "r.yaml",
                               {"collectives.transport=shm", "collectives.hierarchical=on"});
  EXPECT_EQ(recipe.collectives.transport, "shm");
  EXPECT_EQ(recipe.collectives.hierarchical, "on");
}

TEST(RecipeCollectivesTest, BadValuesNameTheLineAndPath) {
  testing_recipes::expect_recipe_errors(recipe_text, {
      {"collectives:\n  timeout_s: 0\n", "r.yaml:7: collectives.timeout_s: "},
      {"collectives:\n  timeout_s: soon\n", "r.yaml:7: collectives.timeout_s: "},
      {"collectives:\n  timeout_s: 1e9\n", "r.yaml:7: collectives.timeout_s: "},
      {"collectives:\n  transport: ucx\n", "r.yaml:7: collectives.transport: unknown value"},
      {"collectives:\n  transport: tpc\n", "did you mean 'tcp'?"},
      {"collectives:\n  hierarchical: maybe\n", "r.yaml:7: collectives.hierarchical: "},
      {"collectives:\n  timeout: 5\n", "r.yaml:7: collectives.timeout: unknown key"},
  });
}

}  // namespace
}  // namespace petaring
