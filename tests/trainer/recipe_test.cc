// Recipe parsing and validation (trainer/recipe.h): the good recipe, the shipped examples,
// a table of malformed recipes with their exact file:line and YAML path, --set overrides
// and the recipe_to_yaml round trip.
#include "trainer/recipe.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

const char* const kFashionFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

// A scratch folder for this process, removed at exit; holds fake data-set folders (the
// recipe checks that the four files exist, not what they hold).
class Scratch {
 public:
  Scratch() {
    root_ = fs::path(::testing::TempDir()) / ("petaring_recipe_test_" + std::to_string(getpid()));
    fs::create_directories(root_);
  }
  ~Scratch() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  // A folder named `name` holding the four files, less `skip` when given.
  std::string data_folder(const std::string& name, const std::string& skip = "") const {
    fs::path folder = root_ / name;
    fs::create_directories(folder);
    for (const char* file : kFashionFiles) {
      if (file != skip) std::ofstream(folder / file) << "x";
    }
    return folder.string();
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(root_ / name) << text;
    return (root_ / name).string();
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

const Scratch& scratch() {
  static const Scratch instance;
  return instance;
}

const std::string& data_dir() {
  static const std::string folder = scratch().data_folder("fashion");
  return folder;
}

// Line numbers matter: the malformed cases below name them.
std::string good_recipe() {
  return "# test recipe\n"                      // 1
         "model:\n"                             // 2
         "  type: mlp\n"                        // 3
         "  layers: [784, 256, 256, 10]\n"      // 4
         "  activation: relu\n"                 // 5
         "  init: kaiming_uniform\n"            // 6
         "data:\n"                              // 7
         "  type: fashion_mnist\n"              // 8
         "  path: " + data_dir() + "\n"         // 9
         "  normalize: false\n"                 // 10
         "optimizer:\n"                         // 11
         "  type: sgd\n"                        // 12
         "  lr: 0.05\n"                         // 13
         "  momentum: 0.9\n"                    // 14
         "  weight_decay: 0\n"                  // 15
         "  nesterov: false\n"                  // 16
         "training:\n"                          // 17
         "  batch_size: 64\n"                   // 18
         "  epochs: 1\n"                        // 19
         "  seed: 0\n"                          // 20
         "  max_steps: 0\n"                     // 21
         "  log_every: 50\n"                    // 22
         "  evaluate: true\n"                   // 23
         "devices:\n"                           // 24
         "  kind: cpu\n"                        // 25
         "  count: 0\n"                         // 26
         "  memory: 2GiB\n"                     // 27
         "  threads: 0\n";                      // 28
}

Recipe expected_good() {
  Recipe recipe;
  recipe.source = "r.yaml";
  recipe.model.layers = {784, 256, 256, 10};
  recipe.data.path = data_dir();
  recipe.optimizer.lr = 0.05;
  recipe.optimizer.momentum = 0.9;
  return recipe;
}

// Replaces the first occurrence of `from` (which must be present) by `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "no '" << from << "' in the recipe";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// Parses and returns the Error message; fails the test when no Error (or another kind).
std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_recipe(text, "r.yaml", overrides);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    EXPECT_EQ(e.exit_code(), 2);
    return e.what();
  }
  ADD_FAILURE() << "parsed without error";
  return "";
}

TEST(RecipeTest, GoodRecipeParsesToExpectedStruct) {
  Recipe recipe = parse_recipe(good_recipe(), "r.yaml");
  EXPECT_EQ(recipe, expected_good());
  EXPECT_EQ(recipe.model.layers, (std::vector<int64_t>{784, 256, 256, 10}));
  EXPECT_DOUBLE_EQ(recipe.optimizer.lr, 0.05);
  EXPECT_EQ(recipe.devices.memory_bytes, 2ull << 30);
}

TEST(RecipeTest, MissingKeysTakeDefaults) {
  Recipe recipe = parse_recipe("model: {layers: [784, 10]}\ndata: {path: " + data_dir() +
                                   "}\noptimizer: {}\ntraining: {}\n",
                               "min.yaml");
  Recipe expected;
  expected.source = "min.yaml";
  expected.model.layers = {784, 10};
  expected.data.path = data_dir();
  EXPECT_EQ(recipe, expected);
}

TEST(RecipeTest, AcceptsOtherSpellingsOfValues) {
  std::string text = replaced(good_recipe(), "memory: 2GiB", "memory: 1.5 GB");
  text = replaced(text, "evaluate: true", "evaluate: no");
  text = replaced(text, "lr: 0.05", "lr: 1e-3");
  text = replaced(text, "seed: 0", "seed: 18446744073709551615");
  Recipe recipe = parse_recipe(text, "r.yaml");
  EXPECT_EQ(recipe.devices.memory_bytes, 1500000000ull);
  EXPECT_FALSE(recipe.training.evaluate);
  EXPECT_DOUBLE_EQ(recipe.optimizer.lr, 1e-3);
  EXPECT_EQ(recipe.training.seed, 18446744073709551615ull);
  recipe = parse_recipe(replaced(good_recipe(), "memory: 2GiB", "memory: 1048576"), "r.yaml");
  EXPECT_EQ(recipe.devices.memory_bytes, 1ull << 20);
}

// The shipped examples parse; they point at the installed data set, so where it is not
// installed the test points data.path at a fake one.
std::vector<std::string> data_override() {
  if (fs::exists(DataConfig().path)) return {};
  return {"data.path=" + data_dir()};
}

TEST(RecipeTest, ExampleFashionMlpParses) {
  Recipe recipe = load_recipe(std::string(PETARING_SOURCE_DIR) + "/examples/recipes/fashion_mlp.yaml",
                              data_override());
  EXPECT_EQ(recipe.model.type, "mlp");
  EXPECT_EQ(recipe.model.layers, (std::vector<int64_t>{784, 256, 256, 10}));
  EXPECT_EQ(recipe.model.activation, "relu");
  EXPECT_EQ(recipe.optimizer.type, "sgd");
  EXPECT_DOUBLE_EQ(recipe.optimizer.lr, 0.05);
  EXPECT_DOUBLE_EQ(recipe.optimizer.momentum, 0.9);
  EXPECT_EQ(recipe.training.batch_size, 64);
  EXPECT_EQ(recipe.training.epochs, 1);
  EXPECT_EQ(recipe.training.seed, 0u);
  EXPECT_EQ(recipe.training.max_steps, 0);
}

TEST(RecipeTest, ExampleFashionMlpSmallParses) {
  Recipe recipe = load_recipe(
      std::string(PETARING_SOURCE_DIR) + "/examples/recipes/fashion_mlp_small.yaml", data_override());
  EXPECT_EQ(recipe.model.layers, (std::vector<int64_t>{784, 64, 10}));
  EXPECT_EQ(recipe.training.max_steps, 100);
  EXPECT_DOUBLE_EQ(recipe.optimizer.lr, 0.05);
  EXPECT_EQ(recipe.training.batch_size, 64);
}

TEST(RecipeTest, MissingFileIsNotFound) {
  const std::string path = (scratch().root() / "nope.yaml").string();
  try {
    load_recipe(path);
    FAIL() << "loaded a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(RecipeTest, FileErrorsNameTheFile) {
  const std::string path = std::string(PETARING_SOURCE_DIR) + "/tests/trainer/recipes/bad_momentum.yaml";
  try {
    load_recipe(path);
    FAIL() << "loaded a bad recipe";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ":13: optimizer.momentum: expected a number in [0, 1), got 1.5");
  }
  const std::string syntax = std::string(PETARING_SOURCE_DIR) + "/tests/trainer/recipes/bad_syntax.yaml";
  try {
    load_recipe(syntax);
    FAIL() << "loaded a bad recipe";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(syntax + ":5: invalid YAML: end of sequence flow", 0), 0u)
        << e.what();
  }
}


// One malformed recipe: the good one with `from` replaced by `to` (or `text` when set),
// and the exact start of the message plus a phrase it must contain.
struct BadCase {
  const char* name;
  std::string from, to;
  std::string prefix;  // "r.yaml:<line>: <path>: "
  std::string phrase;
  std::string text = "";  // whole recipe, instead of from/to
};

void PrintTo(const BadCase& bad, std::ostream* out) { *out << bad.name; }

// The lines of section `name` in the good recipe, its header included.
std::string section(const std::string& name) {
  const std::string text = good_recipe();
  size_t start = text.find(name + ":\n");
  size_t end = text.find("\n", text.find("\n", start) + 1);
  while (end + 1 < text.size() && text[end + 1] == ' ') end = text.find("\n", end + 1);
  return text.substr(start, end + 1 - start);
}

// The good recipe with optimizer line `line` added after nesterov (so at line 17).
BadCase added(const char* name, const std::string& line, const std::string& key,
              const std::string& phrase) {
  return {name, "  nesterov: false", "  nesterov: false\n  " + line,
          "r.yaml:17: optimizer." + key + ": ", phrase};
}

std::vector<BadCase> bad_cases() {
  const std::string dir = data_dir();
  return {
      {"unknown_key", "  momentum: 0.9", "  momentun: 0.9", "r.yaml:14: optimizer.momentun: ",
       "unknown key; did you mean 'momentum'?"},
      {"unknown_section", "optimizer:", "optimiser:", "r.yaml:11: optimiser: ",
       "unknown section; did you mean 'optimizer'?"},
      {"unknown_key_far", "  seed: 0", "  learning_rate: 0.1", "r.yaml:20: training.learning_rate: ",
       "known keys: batch_size, epochs, seed"},
      {"lr_string", "lr: 0.05", "lr: fast", "r.yaml:13: optimizer.lr: ",
       "expected a finite number > 0, got \"fast\""},
      {"lr_zero", "lr: 0.05", "lr: 0", "r.yaml:13: optimizer.lr: ", "> 0, got 0"},
      {"lr_negative", "lr: 0.05", "lr: -0.1", "r.yaml:13: optimizer.lr: ", "got -0.1"},
      {"lr_nan", "lr: 0.05", "lr: .nan", "r.yaml:13: optimizer.lr: ", "finite number"},
      {"lr_inf", "lr: 0.05", "lr: .inf", "r.yaml:13: optimizer.lr: ", "got .inf"},
      {"lr_map", "lr: 0.05", "lr: {value: 0.1}", "r.yaml:13: optimizer.lr: ", "got a map"},
      {"momentum_one", "momentum: 0.9", "momentum: 1", "r.yaml:14: optimizer.momentum: ",
       "expected a number in [0, 1), got 1"},
      {"momentum_negative", "momentum: 0.9", "momentum: -0.5", "r.yaml:14: optimizer.momentum: ",
       "in [0, 1)"},
      {"weight_decay_negative", "weight_decay: 0", "weight_decay: -1e-4",
       "r.yaml:15: optimizer.weight_decay: ", ">= 0, got -1e-4"},
      {"nesterov_misspelled", "nesterov: false", "nesterov: ture", "r.yaml:16: optimizer.nesterov: ",
       "expected true or false, got \"ture\"; did you mean 'true'?"},
      {"nesterov_without_momentum", "momentum: 0.9\n  weight_decay: 0\n  nesterov: false",
       "momentum: 0\n  weight_decay: 0\n  nesterov: true", "r.yaml:16: optimizer.nesterov: ",
       "needs momentum > 0"},
      {"batch_size_zero", "batch_size: 64", "batch_size: 0", "r.yaml:18: training.batch_size: ",
       "expected an integer >= 1, got 0"},
      {"batch_size_float", "batch_size: 64", "batch_size: 6.5", "r.yaml:18: training.batch_size: ",
       "integer >= 1, got 6.5"},
      {"batch_size_quoted", "batch_size: 64", "batch_size: \"64\"",
       "r.yaml:18: training.batch_size: ", "got the string \"64\"; remove the quotes"},
      {"epochs_word", "epochs: 1", "epochs: one", "r.yaml:19: training.epochs: ",
       "integer >= 1, got \"one\""},
      {"seed_negative", "seed: 0", "seed: -1", "r.yaml:20: training.seed: ", "integer >= 0"},
      {"max_steps_negative", "max_steps: 0", "max_steps: -5", "r.yaml:21: training.max_steps: ",
       "integer >= 0, got -5"},
      {"log_every_zero", "log_every: 50", "log_every: 0", "r.yaml:22: training.log_every: ",
       "integer >= 1"},
      {"evaluate_list", "evaluate: true", "evaluate: [true]", "r.yaml:23: training.evaluate: ",
       "got a list"},
      {"layers_map", "layers: [784, 256, 256, 10]", "layers: {in: 784, out: 10}",
       "r.yaml:4: model.layers: ", "expected a list of integers"},
      {"layers_scalar", "layers: [784, 256, 256, 10]", "layers: 784", "r.yaml:4: model.layers: ",
       "got 784"},
      {"layers_one", "layers: [784, 256, 256, 10]", "layers: [784]", "r.yaml:4: model.layers: ",
       "at least 2 sizes"},
      {"layers_zero", "layers: [784, 256, 256, 10]", "layers: [784, 0, 10]",
       "r.yaml:4: model.layers[1]: ", "integer >= 1, got 0"},
      {"layers_block_word", "  layers: [784, 256, 256, 10]",
       "  layers:\n    - 784\n    - 256\n    - wide\n    - 10", "r.yaml:7: model.layers[2]: ",
       "got \"wide\""},
      {"layers_input", "layers: [784, 256, 256, 10]", "layers: [780, 10]",
       "r.yaml:4: model.layers[0]: ", "784 pixels, got 780"},
      {"layers_output", "  layers: [784, 256, 256, 10]", "  layers:\n    - 784\n    - 12",
       "r.yaml:6: model.layers[1]: ", "10 classes, got 12"},
      {"layers_missing", "  layers: [784, 256, 256, 10]\n", "", "r.yaml:2: model.layers: ",
       "required key missing"},
      {"model_type", "type: mlp", "type: cnn", "r.yaml:3: model.type: ",
       "unknown value \"cnn\"; allowed: mlp"},
      {"activation", "activation: relu", "activation: gelu", "r.yaml:5: model.activation: ",
       "allowed: relu"},
      {"init", "init: kaiming_uniform", "init: kaiming_unifrom", "r.yaml:6: model.init: ",
       "did you mean 'kaiming_uniform'? (allowed: kaiming_uniform, kaiming_normal)"},
      {"data_type", "type: fashion_mnist", "type: mnist", "r.yaml:8: data.type: ",
       "allowed: fashion_mnist"},
      {"optimizer_type", "type: sgd", "type: adam", "r.yaml:12: optimizer.type: ",
       "did you mean 'adamw'?"},
      {"optimizer_type_unknown", "type: sgd", "type: lamb", "r.yaml:12: optimizer.type: ",
       "allowed: sgd, adamw"},
      {"nesterov_with_adamw",
       "type: sgd\n  lr: 0.05\n  momentum: 0.9\n  weight_decay: 0\n  nesterov: false",
       "type: adamw\n  lr: 0.05\n  momentum: 0\n  weight_decay: 0\n  nesterov: true",
       "r.yaml:16: optimizer.nesterov: ", "applies to type sgd only"},
      {"momentum_with_adamw", "type: sgd", "type: adamw", "r.yaml:14: optimizer.momentum: ",
       "applies to type sgd only"},
      added("betas_one", "betas: [0.9, 1]", "betas[1]",
            "expected a number in [0, 1), got 1"),
      added("betas_negative", "betas: [-0.1, 0.999]", "betas[0]",
            "expected a number in [0, 1), got -0.1"),
      added("betas_word", "betas: [0.9, high]", "betas[1]",
            "got \"high\""),
      added("betas_short", "betas: [0.9]", "betas",
            "expected 2 numbers [beta1, beta2], got 1"),
      added("betas_long", "betas: [0.9, 0.99, 0.999]", "betas",
            "expected 2 numbers [beta1, beta2], got 3"),
      added("betas_scalar", "betas: 0.9", "betas",
            "expected a list of numbers"),
      added("eps_zero", "eps: 0", "eps",
            "expected a finite number > 0, got 0"),
      added("eps_negative", "eps: -1e-8", "eps",
            "got -1e-8"),
      added("clip_negative", "clip_grad_norm: -1", "clip_grad_norm",
            "expected a finite number >= 0"),
      added("schedule_unknown", "schedule: linear", "schedule",
            "allowed: constant, cosine"),
      added("schedule_typo", "schedule: cosin", "schedule",
            "did you mean 'cosine'?"),
      added("warmup_negative", "warmup_steps: -1", "warmup_steps",
            "expected an integer >= 0, got -1"),
      added("warmup_float", "warmup_steps: 2.5", "warmup_steps",
            "expected an integer >= 0"),
      added("min_lr_above_lr", "min_lr: 0.1", "min_lr",
            "above lr 0.05"),
      added("min_lr_negative", "min_lr: -0.01", "min_lr",
            "expected a finite number >= 0"),
      {"devices_kind", "kind: cpu", "kind: gpu", "r.yaml:25: devices.kind: ", "allowed: cpu"},
      {"devices_count", "count: 0", "count: -2", "r.yaml:26: devices.count: ", "integer >= 0"},
      {"devices_memory_word", "memory: 2GiB", "memory: lots", "r.yaml:27: devices.memory: ",
       "byte size such as 2GiB"},
      {"devices_memory_tiny", "memory: 2GiB", "memory: 1KiB", "r.yaml:27: devices.memory: ",
       "at least 1 MiB"},
      {"devices_threads", "threads: 0", "threads: -1", "r.yaml:28: devices.threads: ",
       "integer >= 0, got -1"},
      {"normalize_number", "normalize: false", "normalize: 3", "r.yaml:10: data.normalize: ",
       "expected true or false, got 3"},
      {"duplicate_key", "  lr: 0.05\n", "  lr: 0.05\n  lr: 0.1\n", "r.yaml:14: optimizer.lr: ",
       "duplicate key (first at line 13)"},
      {"duplicate_section", "", "", "r.yaml:29: model: ", "duplicate key (first at line 2)",
       good_recipe() + "model:\n  layers: [784, 10]\n"},
      {"missing_section", section("training"), "", "r.yaml:2: training: ",
       "required section missing"},
      {"section_scalar", section("devices"), "devices: 4\n", "r.yaml:24: devices: ",
       "expected a map of devices settings, got 4"},
      {"section_empty", section("devices"), "devices:\n", "r.yaml:24: devices: ", "got nothing"},
      {"syntax_map_value", "lr: 0.05", "lr: 0.05: 3", "r.yaml:13: ", "invalid YAML: illegal map value"},
      // yaml-cpp notices the short indent of line 12 on line 13.
      {"syntax_indent", "  type: sgd", " type: sgd", "r.yaml:13: ", "invalid YAML"},
      {"syntax_tab", "  epochs: 1", "\tepochs: 1", "r.yaml:19: ", "invalid YAML: illegal tab"},
      {"empty_file", "", "", "r.yaml:1: ", "the recipe is empty", " "},
      {"only_comments", "", "", "r.yaml:1: ", "the recipe is empty", "# nothing yet\n\n"},
      {"top_level_list", "", "", "r.yaml:2: ", "expected a map of sections",
       "\n- model\n- data\n"},
      {"data_path_missing", "path: " + dir, "path: " + dir + "/nowhere", "r.yaml:9: data.path: ",
       "does not exist; `apt-get install dataset-fashion-mnist` provides the Fashion-MNIST "
       "files at /usr/share/datasets/fashion-mnist, or set data.path"},
      {"data_path_lacks_file", "path: " + dir,
       "path: " + scratch().data_folder("partial", "t10k-labels-idx1-ubyte.gz"),
       "r.yaml:9: data.path: ", "lacks t10k-labels-idx1-ubyte.gz; `apt-get install"},
      {"data_path_default_missing", "  path: " + dir + "\n", "", "r.yaml:7: data.path: ",
       DataConfig().path},
  };
}

class BadRecipeTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadRecipeTest, ReportsLineAndPath) {
  const BadCase& bad = GetParam();
  if (bad.name == std::string("data_path_default_missing") && fs::exists(DataConfig().path)) {
    GTEST_SKIP() << "the data set is installed at " << DataConfig().path;
  }
  const std::string text = !bad.text.empty() ? bad.text : replaced(good_recipe(), bad.from, bad.to);
  const std::string message = parse_error(text);
  EXPECT_EQ(message.rfind(bad.prefix, 0), 0u) << "want prefix: " << bad.prefix << "\n got: " << message;
  EXPECT_NE(message.find(bad.phrase), std::string::npos) << "want: " << bad.phrase << "\n got: " << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "more than one line: " << message;
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadRecipeTest, ::testing::ValuesIn(bad_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RecipeTest, EmptyTextIsAnError) {
  EXPECT_EQ(parse_error("").rfind("r.yaml:1: the recipe is empty;", 0), 0u);
}


TEST(RecipeOverrideTest, OverridesReplaceValues) {
  Recipe recipe = parse_recipe(good_recipe(), "r.yaml",
                               {"training.batch_size=32", "model.layers=[784,128,10]",
                                "optimizer.lr=0.1", "optimizer.lr=0.2", "devices.memory=512MiB",
                                "training.epochs = 2"});
  Recipe expected = expected_good();
  expected.training.batch_size = 32;
  expected.model.layers = {784, 128, 10};
  expected.optimizer.lr = 0.2;  // the last --set of a key wins
  expected.devices.memory_bytes = 512ull << 20;
  expected.training.epochs = 2;
  EXPECT_EQ(recipe, expected);
}

TEST(RecipeOverrideTest, OverridesAddKeysAndSections) {
  const std::string text = replaced(replaced(good_recipe(), section("devices"), ""),
                                    "  evaluate: true\n", "");
  Recipe recipe = parse_recipe(text, "r.yaml", {"devices.count=3", "training.evaluate=false"});
  EXPECT_EQ(recipe.devices.count, 3);
  EXPECT_EQ(recipe.devices.kind, "cpu");
  EXPECT_FALSE(recipe.training.evaluate);
  recipe = parse_recipe(good_recipe(), "r.yaml", {"optimizer={lr: 0.3}"});
  EXPECT_DOUBLE_EQ(recipe.optimizer.lr, 0.3);
  EXPECT_DOUBLE_EQ(recipe.optimizer.momentum, 0.0);  // the whole section was replaced
}

TEST(RecipeOverrideTest, OverrideFixesABadFileValue) {
  const std::string text = replaced(good_recipe(), "batch_size: 64", "batch_size: 0");
  EXPECT_EQ(parse_recipe(text, "r.yaml", {"training.batch_size=8"}).training.batch_size, 8);
}

struct BadOverride {
  std::string set;
  std::string message_start;  // exact start of the message
};

TEST(RecipeOverrideTest, ErrorsNameTheOverride) {
  const std::vector<BadOverride> cases = {
      {"training.batch_size=abc",
       "--set training.batch_size=abc: training.batch_size: expected an integer >= 1, got \"abc\""},
      {"model.layers=[784,0,10]",
       "--set model.layers=[784,0,10]: model.layers[1]: expected an integer >= 1, got 0"},
      {"model.layers=[784,64,12]", "--set model.layers=[784,64,12]: model.layers[2]: fashion_mnist"},
      {"training.batchsize=3",
       "--set training.batchsize=3: training.batchsize: unknown key; did you mean 'batch_size'?"},
      {"trainer.epochs=2", "--set trainer.epochs=2: trainer: unknown section; did you mean 'training'?"},
      {"training.batch_size", "--set training.batch_size: malformed override; write SECTION.KEY=VALUE"},
      {"=3", "--set =3: malformed override"},
      {"training..epochs=3", "--set training..epochs=3: malformed override"},
      {"training.batch_size.x=1", "--set training.batch_size.x=1: training.batch_size.x: too deep"},
      {"model.layers=[784,", "--set model.layers=[784,: model.layers: invalid YAML value"},
      {"optimizer.lr=", "--set optimizer.lr=: optimizer.lr: expected a finite number > 0, got nothing"},
      {"optimizer.momentum=0", "--set optimizer.momentum=0: optimizer.nesterov: needs momentum > 0"},
      {"optimizer={lr: 0.1, momentun: 0.9}",
       "--set optimizer={lr: 0.1, momentun: 0.9}: optimizer.momentun: unknown key"},
      {"data.path=/nonexistent/fashion", "--set data.path=/nonexistent/fashion: data.path: folder"},
  };
  const std::string nesterov = replaced(good_recipe(), "nesterov: false", "nesterov: true");
  for (const auto& bad : cases) {
    // The nesterov check is about a pair of keys: the override set one of them, the file
    // the other, so the message names the file line of nesterov.
    const bool pair = bad.set == "optimizer.momentum=0";
    const std::string message = parse_error(pair ? nesterov : good_recipe(), {bad.set});
    const std::string want = pair ? "r.yaml:16: optimizer.nesterov: needs momentum > 0"
                                  : bad.message_start;
    EXPECT_EQ(message.rfind(want, 0), 0u) << "--set " << bad.set << "\n want: " << want
                                          << "\n  got: " << message;
  }
}

TEST(RecipeOverrideTest, FileErrorsElsewhereStillNameTheFile) {
  const std::string text = replaced(good_recipe(), "epochs: 1", "epochs: 0");
  const std::string message = parse_error(text, {"training.batch_size=16"});
  EXPECT_EQ(message.rfind("r.yaml:19: training.epochs: ", 0), 0u) << message;
}

TEST(RecipeYamlTest, RoundTripsTheGoodRecipe) {
  const Recipe recipe = parse_recipe(good_recipe(), "r.yaml");
  const std::string yaml = recipe_to_yaml(recipe);
  EXPECT_EQ(parse_recipe(yaml, "r.yaml"), recipe) << yaml;
  for (const char* key : {"type:", "layers:", "activation:", "init:", "path:", "normalize:",
                          "lr:", "momentum:", "weight_decay:", "nesterov:", "betas:", "eps:",
                          "clip_grad_norm:", "schedule:", "warmup_steps:", "min_lr:", "batch_size:",
                          "epochs:", "seed:", "max_steps:", "log_every:", "evaluate:", "kind:",
                          "count:", "memory:", "threads:"}) {
    EXPECT_NE(yaml.find(key), std::string::npos) << key << " missing from\n" << yaml;
  }
}

TEST(RecipeYamlTest, RoundTripsUnusualValues) {
  Recipe recipe = expected_good();
  recipe.source = "odd.yaml";
  recipe.model.layers = {784, 3, 1, 10};
  recipe.model.init = "kaiming_normal";
  recipe.data.path = scratch().data_folder("odd: name # with 'quotes' and \"more\"");
  recipe.data.normalize = true;
  recipe.optimizer.lr = 0.1 + 0.2;  // not the double nearest 0.3
  recipe.optimizer.momentum = 1.0 / 3.0;
  recipe.optimizer.weight_decay = 5e-324;
  recipe.optimizer.nesterov = true;
  recipe.training = {7, 3, 18446744073709551615ull, 12345, 1, false};
  recipe.devices = {"cpu", 6, (3ull << 20) + 5, 2};
  const std::string yaml = recipe_to_yaml(recipe);
  EXPECT_EQ(parse_recipe(yaml, "odd.yaml"), recipe) << yaml;
  recipe.devices.memory_bytes = 3ull << 40;
  EXPECT_EQ(parse_recipe(recipe_to_yaml(recipe), "odd.yaml"), recipe);
}

TEST(RecipeYamlTest, RoundTripsAdamwWithScheduleAndClipping) {
  Recipe recipe = expected_good();
  recipe.optimizer.type = "adamw";
  recipe.optimizer.momentum = 0;
  recipe.optimizer.lr = 0.1 + 0.2;
  recipe.optimizer.betas = {1.0 / 3.0, 0.0};
  recipe.optimizer.eps = 5e-324;
  recipe.optimizer.weight_decay = 0.01;
  recipe.optimizer.clip_grad_norm = 0.7;
  recipe.optimizer.schedule = "cosine";
  recipe.optimizer.warmup_steps = 123;
  recipe.optimizer.min_lr = 0.1 + 0.2;  // equal to lr is allowed
  const std::string yaml = recipe_to_yaml(recipe);
  EXPECT_EQ(parse_recipe(yaml, "r.yaml"), recipe) << yaml;
}

TEST(RecipeTest, AdamwKeysParse) {
  const std::string text = replaced(
      replaced(good_recipe(), "type: sgd", "type: adamw"), "momentum: 0.9\n",
      "momentum: 0\n  betas: [0.8, 0.99]\n  eps: 1e-6\n  clip_grad_norm: 1.0\n"
      "  schedule: cosine\n  warmup_steps: 100\n  min_lr: 1e-4\n");
  const OptimizerConfig optimizer = parse_recipe(text, "r.yaml").optimizer;
  EXPECT_EQ(optimizer.type, "adamw");
  EXPECT_EQ(optimizer.betas, (std::vector<double>{0.8, 0.99}));
  EXPECT_EQ(optimizer.eps, 1e-6);
  EXPECT_EQ(optimizer.clip_grad_norm, 1.0);
  EXPECT_EQ(optimizer.schedule, "cosine");
  EXPECT_EQ(optimizer.warmup_steps, 100);
  EXPECT_EQ(optimizer.min_lr, 1e-4);
  // The defaults, for a recipe that names none of them.
  const OptimizerConfig defaults = parse_recipe(good_recipe(), "r.yaml").optimizer;
  EXPECT_EQ(defaults.betas, (std::vector<double>{0.9, 0.999}));
  EXPECT_EQ(defaults.eps, 1e-8);
  EXPECT_EQ(defaults.clip_grad_norm, 0.0);
  EXPECT_EQ(defaults.schedule, "constant");
  EXPECT_EQ(defaults.warmup_steps, 0);
  EXPECT_EQ(defaults.min_lr, 0.0);
}

}  // namespace
}  // namespace petaring
