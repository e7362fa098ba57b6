// A training recipe: the YAML file a user writes, parsed with yaml-cpp into plain structs
// and validated once (load_recipe). Every problem is reported as one line naming the
// file, the line and the YAML path, e.g.
//   fashion_mlp.yaml:7: optimizer.momentum: expected a number in [0, 1), got 1.5
// and raises Error(kInvalidArgument) (exit code 2). docs/recipes.md lists every key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace petaring {

struct ModelConfig {
  std::string type = "mlp";           // "mlp", "gpt" (trainer/gpt.h)
  std::vector<int64_t> layers;        // mlp: sizes, input first: [784, 256, 256, 10]
  std::string activation = "relu";    // "relu" (only)
  std::string init = "kaiming_uniform";  // "kaiming_uniform" (PyTorch's Linear default), "kaiming_normal"
  // gpt only (YAML `layers: N` sets `blocks` for type gpt):
  int64_t vocab = 256;         // token ids < vocab; >= 256 for data.type text (bytes)
  int64_t context = 128;       // tokens per training sequence
  int64_t blocks = 4;          // transformer blocks
  int64_t heads = 4;           // dim % heads == 0
  int64_t dim = 128;           // channels
  bool tie_embeddings = true;  // the LM head reuses the token embedding
  bool operator==(const ModelConfig&) const = default;
};

struct DataConfig {
  std::string type = "fashion_mnist";  // "fashion_mnist" (IDX files), "text" (bytes of a
                                       // text file), "tokens" (a file of uint16 token ids)
  std::string path = "/usr/share/datasets/fashion-mnist";  // folder with the 4 .gz files,
                                                           // or the text / tokens file
  bool normalize = false;  // false: pixels / 255; true: (pixels/255 - mean) / std of the train set
  bool operator==(const DataConfig&) const = default;
};

struct OptimizerConfig {
  std::string type = "sgd";  // "sgd" (PyTorch's SGD), "adamw" (PyTorch's AdamW)
  double lr = 0.01;           // peak rate: after warmup, before any decay
  double momentum = 0.0;      // [0, 1); sgd only (must stay 0 with adamw)
  double weight_decay = 0.0;  // >= 0; coupled (L2) for sgd, decoupled for adamw
  bool nesterov = false;      // sgd only
  std::vector<double> betas = {0.9, 0.999};  // adamw: each in [0, 1)
  double eps = 1e-8;                         // adamw: > 0
  double clip_grad_norm = 0.0;  // 0: off; else the largest global gradient norm (> 0)
  std::string schedule = "constant";  // "constant", "cosine" (to min_lr at the last step)
  int64_t warmup_steps = 0;           // linear warmup from 0 to lr over this many steps
  double min_lr = 0.0;                // cosine's final rate, in [0, lr]
  bool operator==(const OptimizerConfig&) const = default;
};

struct TrainingConfig {
  int64_t batch_size = 64;  // per rank
  int64_t epochs = 1;
  uint64_t seed = 0;
  int64_t max_steps = 0;   // stop after this many steps in total; 0 = run all epochs
  int64_t log_every = 50;  // steps between logged metrics lines
  bool evaluate = true;    // test-set accuracy at the end of each epoch
  int64_t grad_accum_steps = 1;  // micro-batches per optimizer step (each batch_size rows)
  double bucket_mb = 25.0;       // gradient allreduce bucket size, MiB (first bucket smaller)
  // "f32", or "bf16": mixed precision (gpt only): bf16 weight copies and activations,
  // f32 master weights, optimizer state, gradients and their allreduce.
  std::string precision = "f32";
  bool operator==(const TrainingConfig&) const = default;
};

struct DevicesConfig {
  std::string kind = "cpu";  // "cpu" (virtual GPUs), "amd" (AMD GPUs through KFD)
  int64_t count = 0;         // virtual GPUs per host; 0 = one per local rank
  uint64_t memory_bytes = 2ull << 30;  // budget per virtual GPU
  int64_t threads = 0;       // GEMM threads per rank; 0 = cores / local ranks
  bool operator==(const DevicesConfig&) const = default;
};

// Checkpoints (trainer/checkpoint.h). `every` 0 and an empty `dir` turn them off.
struct CheckpointConfig {
  std::string dir;     // folder for step-NNNNNNNN.ckpt files; "" = no checkpoints
  int64_t every = 0;   // steps between checkpoints (0: only at the end)
  int64_t keep = 3;    // newest checkpoints kept (>= 1)
  bool operator==(const CheckpointConfig&) const = default;
};

// Collectives (collectives/communicator.h). The environment variables
// PETARING_COLLECTIVE_TIMEOUT, PETARING_TRANSPORT and PETARING_HIERARCHICAL, when set,
// win over these (docs/recipes.md).
struct CollectivesConfig {
  double timeout_s = 300;          // a wait with no progress for this long is an error
  std::string transport = "auto";  // auto, shm, tcp, mpi (mpi: under mpirun only)
  std::string hierarchical = "auto";  // auto, on, off
  bool operator==(const CollectivesConfig&) const = default;
};

struct Recipe {
  std::string source;  // file name (or "<string>") for messages
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  TrainingConfig training;
  DevicesConfig devices;
  CheckpointConfig checkpoint;
  CollectivesConfig collectives;
  bool operator==(const Recipe&) const = default;
};

// Reads `path`, applies each override ("key.path=value", as given to --set) and
// validates. Throws Error(kNotFound) when the file is missing, Error(kInvalidArgument)
// with a one-line message naming file:line and the YAML path for anything wrong.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
// The same for YAML text held in memory; `source` names it in messages.
Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});

// The recipe back as YAML (all keys, defaults filled in), e.g. for logs and checkpoints.
std::string recipe_to_yaml(const Recipe& recipe);

}  // namespace petaring
