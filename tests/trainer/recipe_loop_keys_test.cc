// The training-loop keys of a recipe: training.grad_accum_steps, training.bucket_mb and
// the checkpoint section (parse, defaults, errors, YAML round trip).
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
    fs::path path = fs::path(::testing::TempDir()) / ("petaring_loop_keys_" + std::to_string(getpid()));
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

TEST(RecipeLoopKeysTest, DefaultsAreOneMicroBatch25MiBBucketsNoCheckpoints) {
  Recipe recipe = parse_recipe(recipe_text(""), "r.yaml");
  EXPECT_EQ(recipe.training.grad_accum_steps, 1);
  EXPECT_DOUBLE_EQ(recipe.training.bucket_mb, 25.0);
  EXPECT_EQ(recipe.checkpoint.dir, "");
  EXPECT_EQ(recipe.checkpoint.every, 0);
  EXPECT_EQ(recipe.checkpoint.keep, 3);
}

TEST(RecipeLoopKeysTest, KeysParseAndRoundTrip) {
  Recipe recipe = parse_recipe(
      recipe_text("  grad_accum_steps: 4\n  bucket_mb: 0.5\n"
                  "checkpoint:\n  dir: runs/a\n  every: 10\n  keep: 2\n"),
      "r.yaml");
  EXPECT_EQ(recipe.training.grad_accum_steps, 4);
  EXPECT_DOUBLE_EQ(recipe.training.bucket_mb, 0.5);
  EXPECT_EQ(recipe.checkpoint.dir, "runs/a");
  EXPECT_EQ(recipe.checkpoint.every, 10);
  EXPECT_EQ(recipe.checkpoint.keep, 2);
  Recipe again = parse_recipe(recipe_to_yaml(recipe), "r.yaml");
  again.source = recipe.source;
  EXPECT_EQ(again, recipe);
}

TEST(RecipeLoopKeysTest, CheckpointExampleParses) {
  // Only the data folder is replaced (the data set need not be installed).
  const std::string text = recipe_text("");
  const std::string folder = text.substr(text.find("path: \"") + 7, text.find("\"}") - text.find("path: \"") - 7);
  Recipe recipe = load_recipe(std::string(PETARING_SOURCE_DIR) + "/examples/recipes/fashion_mlp_ckpt.yaml",
                              {"data.path=\"" + folder + "\""});
  EXPECT_EQ(recipe.training.grad_accum_steps, 2);
  EXPECT_DOUBLE_EQ(recipe.training.bucket_mb, 0.25);
  EXPECT_EQ(recipe.checkpoint.dir, "runs/fashion_mlp");
  EXPECT_EQ(recipe.checkpoint.every, 200);
}

TEST(RecipeLoopKeysTest, BadValuesNameTheLineAndPath) {
  testing_recipes::expect_recipe_errors(recipe_text, {
      {"  grad_accum_steps: 0\n", "r.yaml:6: training.grad_accum_steps: "},
      {"  bucket_mb: -1\n", "r.yaml:6: training.bucket_mb: "},
      {"checkpoint:\n  every: 5\n", "r.yaml:7: checkpoint.every: checkpoints need a folder"},
      {"checkpoint:\n  dir: x\n  keep: 0\n", "r.yaml:8: checkpoint.keep: "},
      {"checkpoint:\n  folder: x\n", "r.yaml:7: checkpoint.folder: unknown key"},
  });
}

}  // namespace
}  // namespace petaring
