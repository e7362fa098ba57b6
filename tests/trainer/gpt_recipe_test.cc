// The gpt model keys and the text / tokens data keys of a recipe: parse, defaults,
// round trip, and errors that name file:line, the YAML path and what to do.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "trainer/recipe.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

const std::string& text_file() {
  static const std::string path = [] {
    fs::path p = fs::path(::testing::TempDir()) / ("petaring_gpt_recipe_" + std::to_string(getpid()) + ".txt");
    std::ofstream(p) << "hello world\n";
    return p.string();
  }();
  return path;
}

std::string recipe_text(const std::string& model, const std::string& data = "") {
  return "model:\n  type: gpt\n" + model + "data:\n" +
         (data.empty() ? "  type: text\n  path: \"" + text_file() + "\"\n" : data) +
         "optimizer: {type: adamw, lr: 0.001}\n"
         "training: {batch_size: 4}\n";
}

std::string error_of(const std::string& text) {
  try {
    parse_recipe(text, "g.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return "";
}

TEST(GptRecipeTest, KeysParseWithDefaultsAndRoundTrip) {
  Recipe recipe = parse_recipe(recipe_text("  layers: 2\n  dim: 64\n  tie_embeddings: false\n"),
                               "g.yaml");
  EXPECT_EQ(recipe.model.type, "gpt");
  EXPECT_EQ(recipe.model.blocks, 2);
  EXPECT_EQ(recipe.model.dim, 64);
  EXPECT_EQ(recipe.model.heads, 4);
  EXPECT_EQ(recipe.model.vocab, 256);
  EXPECT_EQ(recipe.model.context, 128);
  EXPECT_FALSE(recipe.model.tie_embeddings);
  EXPECT_EQ(recipe.data.type, "text");
  EXPECT_EQ(recipe.data.path, text_file());
  Recipe again = parse_recipe(recipe_to_yaml(recipe), "g.yaml");
  again.source = recipe.source;
  EXPECT_EQ(again, recipe);
}

TEST(GptRecipeTest, ExampleRecipeLoads) {
  const std::string path = std::string(PETARING_SOURCE_DIR) + "/examples/recipes/gpt_char.yaml";
  if (!fs::exists("/usr/share/games/fortunes/computers")) {
    GTEST_SKIP() << "the fortunes package is not installed (its text is the example's data)";
  }
  Recipe recipe = load_recipe(path);
  EXPECT_EQ(recipe.model.type, "gpt");
  EXPECT_EQ(recipe.model.blocks, 4);
  EXPECT_EQ(recipe.model.dim, 128);
}

TEST(GptRecipeTest, BadValuesNameTheLineThePathAndTheFix) {
  struct Case {
    std::string text;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {recipe_text("  heads: 3\n  dim: 128\n"),
       {"g.yaml:4: model.dim: 128 is not a multiple of heads (3)", "dim: 126"}},
      {recipe_text("  vocab: 100\n"), {"g.yaml:3: model.vocab: is 100", "set vocab: 256"}},
      {recipe_text("  layers: [4]\n"), {"model.layers", "integer"}},
      {recipe_text("  activation: relu\n"), {"model.activation: applies to type mlp only"}},
      {recipe_text("", "  type: fashion_mnist\n"), {"data.type: model.type gpt reads token"}},
      {recipe_text("", "  type: text\n"), {"data.path: required key missing for type text"}},
      {recipe_text("", "  type: tokens\n  path: /no/such/file.bin\n"),
       {"g.yaml:5: data.path: tokens file \"/no/such/file.bin\" does not exist"}},
      {recipe_text("", "  type: text\n  path: /tmp\n"), {"(it is a folder)"}},
      {"model: {type: mlp, layers: [784, 10], dim: 5}\ndata: {type: fashion_mnist}\n"
       "optimizer: {}\ntraining: {}\n",
       {"model.dim: applies to type gpt only"}},
  };
  for (const Case& c : cases) {
    const std::string message = error_of(c.text);
    for (const std::string& part : c.parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "expected '" << part << "' in: " << message;
    }
  }
}

}  // namespace
}  // namespace petaring
