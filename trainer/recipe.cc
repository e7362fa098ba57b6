// Recipe loading: YAML text -> checked tree -> overrides -> typed sections -> cross-field
// checks. Field-level reads and the message format live in trainer/recipe_reader.cc.
#include "trainer/recipe.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "runtime/error.h"
#include "trainer/recipe_reader.h"

namespace petaring {
namespace {

using recipe_detail::Context;
using recipe_detail::describe;
using recipe_detail::NumberRule;
using recipe_detail::SectionReader;
using recipe_detail::suggestion;

const std::vector<std::string> kSections = {"model",    "data",    "optimizer",
                                            "training", "devices", "checkpoint",
                                            "collectives"};
const std::map<std::string, std::vector<std::string>> kSectionKeys = {
    {"model",
     {"type", "layers", "activation", "init", "vocab", "context", "heads", "dim",
      "tie_embeddings"}},
    {"data", {"type", "path", "normalize"}},
    {"optimizer",
     {"type", "lr", "momentum", "weight_decay", "nesterov", "betas", "eps", "clip_grad_norm",
      "schedule", "warmup_steps", "min_lr"}},
    {"training",
     {"batch_size", "epochs", "seed", "max_steps", "log_every", "evaluate", "grad_accum_steps",
      "bucket_mb", "precision"}},
    {"devices", {"kind", "count", "memory", "threads"}},
    {"checkpoint", {"dir", "every", "keep"}},
    {"collectives", {"timeout_s", "transport", "hierarchical"}},
};
// What to write when a required section is missing.
const std::map<std::string, std::string> kSectionExamples = {
    {"model", "model: {type: mlp, layers: [784, 256, 10]}"},
    {"data", "data: {type: fashion_mnist}"},
    {"optimizer", "optimizer: {type: sgd, lr: 0.05}"},
    {"training", "training: {batch_size: 64, epochs: 1}"},
};

// Debian's fortune-mod and fortunes packages install text like this.
const char kTextExample[] = "path: /usr/share/games/fortunes/computers";
constexpr int64_t kFashionPixels = 28 * 28;
constexpr int64_t kFashionClasses = 10;
constexpr uint64_t kMinDeviceMemory = 1ull << 20;
const char* const kFashionFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
const char kFashionHint[] =
    "`apt-get install dataset-fashion-mnist` provides the Fashion-MNIST files at "
    "/usr/share/datasets/fashion-mnist, or set data.path to a folder that holds them";

YAML::Node parse_document(const std::string& text, const Context& context) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    context.fail_line(e.mark.is_null() ? 1 : e.mark.line + 1, "",
                      str_cat("invalid YAML: ", e.msg,
                              "; fix the syntax here (indent with spaces, close every [ and {)"));
  }
}

// yaml-cpp keeps both entries of a repeated key; a recipe must not have any.
void check_duplicates(const YAML::Node& map, const std::string& path, const Context& context) {
  std::map<std::string, int> first_line;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) continue;
    const std::string& key = it->first.Scalar();
    const std::string child = path.empty() ? key : path + "." + key;
    auto [seen, fresh] = first_line.emplace(key, it->first.Mark().line + 1);
    if (!fresh) {
      context.fail(it->first, child,
                   str_cat("duplicate key (first at line ", seen->second, "); keep only one"));
    }
    if (it->second.IsMap()) check_duplicates(it->second, child, context);
  }
}

// The path of one "--set section.key=value" as {section} or {section, key}, checked
// against the known sections and keys.
std::vector<std::string> override_path(const std::string& text, size_t equals) {
  std::string path = text.substr(0, equals == std::string::npos ? 0 : equals);
  path.erase(0, path.find_first_not_of(" "));
  path.erase(path.find_last_not_of(" ") + 1);
  std::vector<std::string> parts;
  std::stringstream split(path);
  for (std::string part; std::getline(split, part, '.');) parts.push_back(part);
  bool empty_part = path.empty() || path.back() == '.';
  for (const auto& part : parts) empty_part = empty_part || part.empty();
  if (equals == std::string::npos || empty_part) {
    PR_FAIL(kInvalidArgument, "--set ", text,
            ": malformed override; write SECTION.KEY=VALUE, e.g. --set training.batch_size=32");
  }
  if (!kSectionKeys.count(parts[0])) {
    PR_FAIL(kInvalidArgument, "--set ", text, ": ", parts[0], ": unknown section; ",
            suggestion(parts[0], kSections, "sections"));
  }
  const auto& keys = kSectionKeys.at(parts[0]);
  if (parts.size() > 1 && std::find(keys.begin(), keys.end(), parts[1]) == keys.end()) {
    PR_FAIL(kInvalidArgument, "--set ", text, ": ", parts[0], ".", parts[1], ": unknown key; ",
            suggestion(parts[1], keys, "known keys"));
  }
  if (parts.size() > 2) {
    PR_FAIL(kInvalidArgument, "--set ", text, ": ", path,
            ": too deep; recipe values sit at SECTION.KEY, e.g. training.batch_size");
  }
  return parts;
}

// Applies one "--set section.key=value" to the tree (the value parsed as YAML), recording
// it in `context` so that errors about that path name the override.
void apply_override(YAML::Node& root, const std::string& text, Context& context) {
  const size_t equals = text.find('=');
  const std::vector<std::string> parts = override_path(text, equals);
  const std::string path = parts.size() == 1 ? parts[0] : parts[0] + "." + parts[1];
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(equals + 1));
  } catch (const YAML::Exception& e) {
    PR_FAIL(kInvalidArgument, "--set ", text, ": ", path, ": invalid YAML value: ", e.msg,
            "; quote the value or close its brackets");
  }
  context.add_override(path, text);
  if (parts.size() == 1) {
    root[parts[0]] = value;
    return;
  }
  const YAML::Node& const_root = root;
  YAML::Node section = const_root[parts[0]];
  if (!section.IsDefined() || section.IsNull()) {
    YAML::Node fresh(YAML::NodeType::Map);
    fresh[parts[1]] = value;
    root[parts[0]] = fresh;
  } else if (section.IsMap()) {
    section[parts[1]] = value;
  }  // else: the section itself is wrong in the file, reported by its SectionReader.
}

// Each section's key and value nodes, after checking the top-level keys.
struct SectionNodes {
  YAML::Node key;
  YAML::Node value;
};

std::map<std::string, SectionNodes> top_level(const YAML::Node& root, const Context& context) {
  std::map<std::string, SectionNodes> sections;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (!it->first.IsScalar()) context.fail(it->first, "", "section names must be plain words");
    const std::string& name = it->first.Scalar();
    if (!kSectionKeys.count(name)) {
      context.fail(it->first, name,
                   str_cat("unknown section; ", suggestion(name, kSections, "sections")));
    }
    sections.emplace(name, SectionNodes{it->first, it->second});
  }
  for (const auto& [name, example] : kSectionExamples) {
    if (!sections.count(name)) {
      context.fail(root, name, str_cat("required section missing; add it, e.g. `", example, "`"));
    }
  }
  return sections;
}

// Keys that belong to one model type only.
const std::vector<std::string> kMlpOnlyKeys = {"activation", "init"};
const std::vector<std::string> kGptOnlyKeys = {"vocab", "context", "heads", "dim",
                                               "tie_embeddings"};

void read_gpt(const SectionReader& reader, ModelConfig* model) {
  for (const std::string& key : kMlpOnlyKeys) {
    if (reader.has(key)) {
      reader.fail(key, "applies to type mlp only; remove it with type gpt (GELU and GPT-2's "
                       "initialization are fixed)");
    }
  }
  if (reader.has("layers")) reader.get_int("layers", 1, &model->blocks);
  reader.get_int("vocab", 1, &model->vocab);
  reader.get_int("context", 1, &model->context);
  reader.get_int("heads", 1, &model->heads);
  reader.get_int("dim", 1, &model->dim);
  reader.get_bool("tie_embeddings", &model->tie_embeddings);
  if (model->dim % model->heads != 0) {
    reader.fail("dim", str_cat(model->dim, " is not a multiple of heads (", model->heads,
                               "); pick dim = heads x head size, e.g. dim: ",
                               model->heads * std::max<int64_t>(1, model->dim / model->heads)));
  }
}

void read_model(const SectionReader& reader, ModelConfig* model) {
  reader.get_enum("type", {"mlp", "gpt"}, &model->type);
  if (model->type == "gpt") {
    read_gpt(reader, model);
    return;
  }
  for (const std::string& key : kGptOnlyKeys) {
    if (reader.has(key)) {
      reader.fail(key, "applies to type gpt only; remove it, or set model.type: gpt");
    }
  }
  if (!reader.has("layers")) {
    reader.fail("layers", "required key missing; list the layer sizes, input first, e.g. "
                          "layers: [784, 256, 10]");
  }
  reader.get_int_list("layers", 1, &model->layers);
  if (model->layers.size() < 2) {
    reader.fail("layers", str_cat("expected at least 2 sizes (input and output), got ",
                                  model->layers.size(), "; e.g. [784, 256, 10]"));
  }
  reader.get_enum("activation", {"relu"}, &model->activation);
  reader.get_enum("init", {"kaiming_uniform", "kaiming_normal"}, &model->init);
}

void read_data(const SectionReader& reader, DataConfig* data) {
  reader.get_enum("type", {"fashion_mnist", "text", "tokens"}, &data->type);
  if (data->type != "fashion_mnist") {
    if (!reader.has("path")) {
      reader.fail("path", str_cat("required key missing for type ", data->type, "; name the ",
                                  data->type == "text" ? "text" : "uint16 token",
                                  " file, e.g. ", kTextExample));
    }
    if (reader.has("normalize")) {
      reader.fail("normalize", "applies to type fashion_mnist only; remove it");
    }
  }
  reader.get_string("path", &data->path);
  reader.get_bool("normalize", &data->normalize);
}

// The keys that only one optimizer type understands must keep their neutral values with
// the other.
void check_optimizer_type(const SectionReader& reader, const OptimizerConfig& optimizer) {
  if (optimizer.type == "adamw") {
    if (optimizer.nesterov) {
      reader.fail("nesterov", "applies to type sgd only; remove it (or set nesterov: false) "
                              "with type adamw, whose betas set the averaging");
    }
    if (optimizer.momentum != 0) {
      reader.fail("momentum", "applies to type sgd only; remove it (or set momentum: 0) "
                              "with type adamw and set betas: [beta1, beta2] instead");
    }
  } else if (optimizer.nesterov && optimizer.momentum == 0) {
    reader.fail("nesterov", "needs momentum > 0 (PyTorch rejects it too); set "
                            "optimizer.momentum, e.g. 0.9, or nesterov: false");
  }
}

void read_optimizer(const SectionReader& reader, OptimizerConfig* optimizer) {
  reader.get_enum("type", {"sgd", "adamw"}, &optimizer->type);
  reader.get_number("lr", NumberRule::kPositive, &optimizer->lr);
  reader.get_number("momentum", NumberRule::kUnitInterval, &optimizer->momentum);
  reader.get_number("weight_decay", NumberRule::kNonNegative, &optimizer->weight_decay);
  reader.get_bool("nesterov", &optimizer->nesterov);
  reader.get_number_list("betas", NumberRule::kUnitInterval, &optimizer->betas);
  if (optimizer->betas.size() != 2) {
    reader.fail("betas", str_cat("expected 2 numbers [beta1, beta2], got ",
                                 optimizer->betas.size(), "; e.g. betas: [0.9, 0.999]"));
  }
  reader.get_number("eps", NumberRule::kPositive, &optimizer->eps);
  reader.get_number("clip_grad_norm", NumberRule::kNonNegative, &optimizer->clip_grad_norm);
  reader.get_enum("schedule", {"constant", "cosine"}, &optimizer->schedule);
  reader.get_int("warmup_steps", 0, &optimizer->warmup_steps);
  reader.get_number("min_lr", NumberRule::kNonNegative, &optimizer->min_lr);
  if (optimizer->min_lr > optimizer->lr) {
    reader.fail("min_lr", str_cat("is ", optimizer->min_lr, ", above lr ", optimizer->lr,
                                  "; the schedule decays from lr down to min_lr, so keep "
                                  "min_lr <= lr"));
  }
  check_optimizer_type(reader, *optimizer);
}

void read_training(const SectionReader& reader, TrainingConfig* training) {
  reader.get_int("batch_size", 1, &training->batch_size);
  reader.get_int("epochs", 1, &training->epochs);
  reader.get_uint("seed", &training->seed);
  reader.get_int("max_steps", 0, &training->max_steps);
  reader.get_int("log_every", 1, &training->log_every);
  reader.get_bool("evaluate", &training->evaluate);
  reader.get_int("grad_accum_steps", 1, &training->grad_accum_steps);
  reader.get_number("bucket_mb", NumberRule::kPositive, &training->bucket_mb);
  reader.get_enum("precision", {"f32", "bf16"}, &training->precision);
}

// Mixed precision is implemented for the GPT (trainer/gpt.h) only.
void check_precision_fits_model(const Recipe& recipe, const SectionReader& training) {
  if (recipe.training.precision != "f32" && recipe.model.type != "gpt") {
    training.fail("precision", str_cat(recipe.training.precision, " is implemented for "
                                       "model.type gpt only; use precision: f32 with type ",
                                       recipe.model.type));
  }
}

void read_checkpoint(const SectionReader& reader, CheckpointConfig* checkpoint) {
  reader.get_string("dir", &checkpoint->dir);
  reader.get_int("every", 0, &checkpoint->every);
  reader.get_int("keep", 1, &checkpoint->keep);
  if (checkpoint->dir.empty() && checkpoint->every > 0) {
    reader.fail("every", "checkpoints need a folder; set checkpoint.dir, e.g. dir: runs/ckpt");
  }
}

void read_collectives(const SectionReader& reader, CollectivesConfig* collectives) {
  reader.get_number("timeout_s", NumberRule::kPositive, &collectives->timeout_s);
  if (!(collectives->timeout_s <= 1e7)) {
    reader.fail("timeout_s", "expected a number of seconds up to 1e7 (e.g. 300)");
  }
  reader.get_enum("transport", {"auto", "shm", "tcp", "mpi"}, &collectives->transport);
  reader.get_enum("hierarchical", {"auto", "on", "off"}, &collectives->hierarchical);
}

void read_devices(const SectionReader& reader, DevicesConfig* devices) {
  reader.get_enum("kind", {"cpu", "amd"}, &devices->kind);
  reader.get_int("count", 0, &devices->count);
  reader.get_bytes("memory", kMinDeviceMemory, &devices->memory_bytes);
  reader.get_int("threads", 0, &devices->threads);
}

// A gpt reads token sequences (text, tokens); an mlp reads images (fashion_mnist).
void check_model_type_fits_data(const Recipe& recipe, const SectionReader& model,
                                const SectionReader& data) {
  const bool sequences = recipe.data.type == "text" || recipe.data.type == "tokens";
  if (recipe.model.type == "gpt" && !sequences) {
    data.fail("type", str_cat("model.type gpt reads token sequences, not ", recipe.data.type,
                              "; set data.type: text (any text file, byte-level) or tokens"));
  }
  if (recipe.model.type == "mlp" && sequences) {
    model.fail("type", str_cat("data.type ", recipe.data.type,
                               " holds token sequences, which type mlp cannot read; set "
                               "model.type: gpt"));
  }
  if (recipe.data.type == "text" && recipe.model.vocab < 256) {
    model.fail("vocab", str_cat("is ", recipe.model.vocab, ", but data.type text feeds bytes "
                                "(ids 0..255); set vocab: 256"));
  }
}

// The model's ends must match the data set: 784 pixels in, 10 classes out.
void check_model_fits_data(const Recipe& recipe, const SectionReader& model) {
  if (recipe.data.type != "fashion_mnist") return;
  const auto& layers = recipe.model.layers;
  if (layers.front() != kFashionPixels) {
    model.fail_item("layers", 0,
                    str_cat("fashion_mnist images have ", kFashionPixels, " pixels, got ",
                            layers.front(), "; make the first size ", kFashionPixels));
  }
  if (layers.back() != kFashionClasses) {
    model.fail_item("layers", layers.size() - 1,
                    str_cat("fashion_mnist has ", kFashionClasses, " classes, got ",
                            layers.back(), "; make the last size ", kFashionClasses));
  }
}

void check_data_files(const DataConfig& data, const SectionReader& reader) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (data.type != "fashion_mnist") {
    if (!fs::is_regular_file(data.path, error)) {
      reader.fail("path", str_cat(data.type, " file \"", data.path, "\" does not exist",
                                  fs::is_directory(data.path, error) ? " (it is a folder)" : "",
                                  "; name a file, e.g. ", kTextExample));
    }
    return;
  }
  if (!fs::is_directory(data.path, error)) {
    reader.fail("path", str_cat("folder \"", data.path, "\" does not exist; ", kFashionHint));
  }
  for (const char* name : kFashionFiles) {
    if (!fs::is_regular_file(fs::path(data.path) / name, error)) {
      reader.fail("path", str_cat("folder \"", data.path, "\" lacks ", name, "; ", kFashionHint));
    }
  }
}

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  Context context(source);
  YAML::Node root = parse_document(yaml_text, context);
  if (!root.IsDefined() || root.IsNull()) {
    context.fail_line(1, "", "the recipe is empty; start from examples/recipes/fashion_mlp.yaml "
                             "(sections: model, data, optimizer, training, devices)");
  }
  if (!root.IsMap()) {
    context.fail(root, "", str_cat("expected a map of sections (model, data, optimizer, "
                                   "training, devices) at the top level, got ",
                                   describe(root), "; see docs/recipes.md"));
  }
  check_duplicates(root, "", context);
  for (const auto& text : overrides) apply_override(root, text, context);
  auto sections = top_level(root, context);
  auto reader = [&](const std::string& name) {
    const SectionNodes& nodes = sections.at(name);
    return SectionReader(context, name, nodes.key, nodes.value, kSectionKeys.at(name));
  };

  Recipe recipe;
  recipe.source = source;
  const SectionReader model = reader("model");
  read_model(model, &recipe.model);
  const SectionReader data = reader("data");
  read_data(data, &recipe.data);
  read_optimizer(reader("optimizer"), &recipe.optimizer);
  const SectionReader training = reader("training");
  read_training(training, &recipe.training);
  check_precision_fits_model(recipe, training);
  if (sections.count("devices")) read_devices(reader("devices"), &recipe.devices);
  if (sections.count("checkpoint")) read_checkpoint(reader("checkpoint"), &recipe.checkpoint);
  if (sections.count("collectives")) {
    read_collectives(reader("collectives"), &recipe.collectives);
  }
  check_model_type_fits_data(recipe, model, data);
  check_model_fits_data(recipe, model);
  check_data_files(recipe.data, data);
  return recipe;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    PR_FAIL(kNotFound, "recipe file \"", path,
            "\" does not exist; check the path (examples/recipes/ holds ready-made recipes)");
  }
  if (std::filesystem::is_directory(path, error)) {
    PR_FAIL(kInvalidArgument, "recipe \"", path, "\" is a folder; give a .yaml file");
  }
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  if (!file) PR_FAIL(kPermissionDenied, "cannot read recipe file \"", path, "\"");
  return parse_recipe(text.str(), path, overrides);
}

}  // namespace petaring
