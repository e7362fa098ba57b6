// recipe_to_yaml: every key with its value, in the order of docs/recipes.md. The text
// parses back (parse_recipe) to an equal Recipe: numbers are written in their shortest
// exact form and byte sizes exactly.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>

#include "runtime/error.h"
#include "trainer/recipe.h"

namespace petaring {
namespace {

// Shortest text that reads back as the same double; YAML's spellings when not finite.
std::string number_text(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char text[64];
  auto [end, error] = std::to_chars(text, text + sizeof(text), value);
  std::string out(text, end);
  // "1e-05" and "3" read back fine, but a dot keeps the value looking like a float.
  if (out.find_first_of(".en") == std::string::npos) out += ".0";
  return out;
}

// "2GiB" when a whole number of a binary unit, else the exact number of bytes.
std::string bytes_text(uint64_t bytes) {
  static const char* const kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = 1ull << (10 * (4 - i));
    if (bytes != 0 && bytes % unit == 0) return str_cat(bytes / unit, kUnits[i]);
  }
  return std::to_string(bytes);
}

const char* bool_text(bool value) { return value ? "true" : "false"; }

}  // namespace

std::string recipe_to_yaml(const Recipe& recipe) {
  YAML::Emitter out;
  if (!recipe.source.empty()) out << YAML::Comment(str_cat("petaring recipe from ", recipe.source));
  out << YAML::BeginMap;

  const ModelConfig& model = recipe.model;
  out << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << model.type;
  if (model.type == "gpt") {  // each type writes only the keys it reads
    out << YAML::Key << "layers" << YAML::Value << model.blocks;
    out << YAML::Key << "vocab" << YAML::Value << model.vocab;
    out << YAML::Key << "context" << YAML::Value << model.context;
    out << YAML::Key << "heads" << YAML::Value << model.heads;
    out << YAML::Key << "dim" << YAML::Value << model.dim;
    out << YAML::Key << "tie_embeddings" << YAML::Value << bool_text(model.tie_embeddings)
        << YAML::EndMap;
  } else {
    out << YAML::Key << "layers" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (int64_t size : model.layers) out << size;
    out << YAML::EndSeq;
    out << YAML::Key << "activation" << YAML::Value << model.activation;
    out << YAML::Key << "init" << YAML::Value << model.init << YAML::EndMap;
  }

  const DataConfig& data = recipe.data;
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << data.type;
  out << YAML::Key << "path" << YAML::Value << YAML::DoubleQuoted << data.path;
  if (data.type == "fashion_mnist") {
    out << YAML::Key << "normalize" << YAML::Value << bool_text(data.normalize);
  }
  out << YAML::EndMap;

  const OptimizerConfig& optimizer = recipe.optimizer;
  out << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << optimizer.type;
  out << YAML::Key << "lr" << YAML::Value << number_text(optimizer.lr);
  out << YAML::Key << "momentum" << YAML::Value << number_text(optimizer.momentum);
  out << YAML::Key << "weight_decay" << YAML::Value << number_text(optimizer.weight_decay);
  out << YAML::Key << "nesterov" << YAML::Value << bool_text(optimizer.nesterov);
  out << YAML::Key << "betas" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (double beta : optimizer.betas) out << number_text(beta);
  out << YAML::EndSeq;
  out << YAML::Key << "eps" << YAML::Value << number_text(optimizer.eps);
  out << YAML::Key << "clip_grad_norm" << YAML::Value << number_text(optimizer.clip_grad_norm);
  out << YAML::Key << "schedule" << YAML::Value << optimizer.schedule;
  out << YAML::Key << "warmup_steps" << YAML::Value << optimizer.warmup_steps;
  out << YAML::Key << "min_lr" << YAML::Value << number_text(optimizer.min_lr) << YAML::EndMap;

  const TrainingConfig& training = recipe.training;
  out << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "batch_size" << YAML::Value << training.batch_size;
  out << YAML::Key << "epochs" << YAML::Value << training.epochs;
  out << YAML::Key << "seed" << YAML::Value << training.seed;
  out << YAML::Key << "max_steps" << YAML::Value << training.max_steps;
  out << YAML::Key << "log_every" << YAML::Value << training.log_every;
  out << YAML::Key << "evaluate" << YAML::Value << bool_text(training.evaluate);
  out << YAML::Key << "grad_accum_steps" << YAML::Value << training.grad_accum_steps;
  out << YAML::Key << "bucket_mb" << YAML::Value << number_text(training.bucket_mb);
  out << YAML::Key << "precision" << YAML::Value << training.precision << YAML::EndMap;

  const DevicesConfig& devices = recipe.devices;
  out << YAML::Key << "devices" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "kind" << YAML::Value << devices.kind;
  out << YAML::Key << "count" << YAML::Value << devices.count;
  out << YAML::Key << "memory" << YAML::Value << bytes_text(devices.memory_bytes);
  out << YAML::Key << "threads" << YAML::Value << devices.threads << YAML::EndMap;

  const CheckpointConfig& checkpoint = recipe.checkpoint;
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << checkpoint.dir;
  out << YAML::Key << "every" << YAML::Value << checkpoint.every;
  out << YAML::Key << "keep" << YAML::Value << checkpoint.keep << YAML::EndMap;

  const CollectivesConfig& collectives = recipe.collectives;
  out << YAML::Key << "collectives" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "timeout_s" << YAML::Value << number_text(collectives.timeout_s);
  out << YAML::Key << "transport" << YAML::Value << collectives.transport;
  out << YAML::Key << "hierarchical" << YAML::Value << YAML::DoubleQuoted
      << collectives.hierarchical << YAML::EndMap;

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace petaring
