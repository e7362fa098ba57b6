// Checkpoints: everything a run needs to continue exactly where it stopped.
//
// A checkpoint is one file, `<dir>/step-<8 digits>.ckpt`:
//   "PETARING-CKPT-1\n"                   magic and format version (16 bytes)
//   u64 little-endian N, N bytes of JSON  metadata: step, data position, seed, world size,
//                                         batch, recipe hash and text, tensor list, RNG
//   the tensors' f32 values, in the order of the metadata's "tensors" list
//   32 bytes                              SHA-256 (OpenSSL) of everything before
// Writing is atomic: a temporary file in the same folder, fsync, rename, fsync of the
// folder; a crash leaves the previous checkpoints intact and at worst a stray temporary
// (`*.tmp`, which readers ignore). Reading checks size and checksum before
// trusting a byte, so a truncated or corrupted file is reported with its path.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "trainer/data/source.h"
#include "trainer/recipe.h"

namespace petaring {

struct CheckpointState {
  int64_t step = 0;  // optimizer steps done
  DataPosition position;
  uint64_t seed = 0;
  int world_size = 1;
  int64_t global_batch = 0;
  int64_t total_steps = 0;
  std::string recipe_hash;  // recipe_hash() of the run that wrote it
  std::string recipe_yaml;  // recipe_to_yaml() of that run, for messages
  std::string model;        // Model::describe()
  std::string rng_state;    // Model::rng_state()
  // "params", then the optimizer's state by name; each (num_params) f32.
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
};

// SHA-256 (hex) of the recipe's YAML form (recipe_to_yaml, source left out).
std::string recipe_hash(const Recipe& recipe);

// `<dir>/step-<8 digits>.ckpt`.
std::string checkpoint_path(const std::string& dir, int64_t step);

// Writes `state` to checkpoint_path(dir, state.step) atomically, creating `dir` when
// missing; then deletes all but the newest `keep` checkpoints in `dir`. Throws
// kPermissionDenied / kFailedPrecondition naming the path when the OS refuses.
void write_checkpoint(const std::string& dir, const CheckpointState& state, int64_t keep);

// Reads and verifies one checkpoint. Throws kNotFound when missing and
// kFailedPrecondition naming the path when it is truncated, corrupted (checksum) or not a
// checkpoint.
CheckpointState read_checkpoint(const std::string& path);

// The checkpoints in `dir`, oldest first (by step). Empty when there are none or `dir`
// does not exist.
std::vector<std::string> list_checkpoints(const std::string& dir);

// The newest checkpoint of `dir` that reads back intact; each bad newer one is logged
// (path and what is wrong) and skipped. `*path` gets the file used. Throws kNotFound
// when `dir` holds no usable checkpoint (naming the bad ones).
CheckpointState read_latest_checkpoint(const std::string& dir, std::string* path);

}  // namespace petaring
