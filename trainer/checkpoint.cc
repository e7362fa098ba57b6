#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[] = "PETARING-CKPT-1\n";
constexpr size_t kMagicSize = sizeof(kMagic) - 1;  // 16
constexpr size_t kDigestSize = SHA256_DIGEST_LENGTH;

std::string sha256(const void* data, size_t size) {
  unsigned char digest[kDigestSize];
  SHA256(static_cast<const unsigned char*>(data), size, digest);
  return std::string(reinterpret_cast<const char*>(digest), kDigestSize);
}

std::string hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

void append_u64(std::string* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t read_u64(const std::string& in, size_t at) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return value;
}

std::string serialize(const CheckpointState& state) {
  nlohmann::json meta = {{"step", state.step},
                         {"epoch", state.position.epoch},
                         {"sample", state.position.sample},
                         {"seed", state.seed},
                         {"world_size", state.world_size},
                         {"global_batch", state.global_batch},
                         {"total_steps", state.total_steps},
                         {"recipe_hash", state.recipe_hash},
                         {"recipe", state.recipe_yaml},
                         {"model", state.model},
                         {"rng_state", state.rng_state}};
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& [name, values] : state.tensors) tensors.push_back({{"name", name}, {"count", values.size()}});
  meta["tensors"] = tensors;
  const std::string meta_text = meta.dump();
  std::string out(kMagic, kMagicSize);
  append_u64(&out, meta_text.size());
  out += meta_text;
  for (const auto& [name, values] : state.tensors) {
    out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  out += sha256(out.data(), out.size());
  return out;
}

[[noreturn]] void fail_os(const std::string& what, const std::string& path) {
  const int error = errno;
  const std::string message = str_cat("checkpoint ", path, ": ", what, " failed: ", std::strerror(error),
                                      "; check that checkpoint.dir is writable and has space");
  if (error == EACCES || error == EPERM || error == EROFS) PR_FAIL(kPermissionDenied, message);
  PR_FAIL(kFailedPrecondition, message);
}

void write_all(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_os("write", path);
    done += static_cast<size_t>(n);
  }
}

void fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail_os("open", path);
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail_os("fsync", path);
  }
  ::close(fd);
}

[[noreturn]] void fail_bad(const std::string& path, const std::string& what) {
  PR_FAIL(kFailedPrecondition, "checkpoint ", path, ": ", what);
}

int64_t step_of(const fs::path& file) {
  const std::string name = file.filename().string();
  if (name.size() != 18 || name.rfind("step-", 0) != 0 || name.substr(13) != ".ckpt") return -1;
  const std::string digits = name.substr(5, 8);
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

}  // namespace

std::string recipe_hash(const Recipe& recipe) {
  Recipe copy = recipe;
  copy.source.clear();
  const std::string text = recipe_to_yaml(copy);
  return hex(sha256(text.data(), text.size()));
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld.ckpt", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code error;
  if (!fs::is_directory(dir, error)) return {};
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    const int64_t step = step_of(entry.path());
    if (step >= 0 && entry.is_regular_file(error)) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

void write_checkpoint(const std::string& dir, const CheckpointState& state, int64_t keep) {
  PR_CHECK_GE(keep, 1);
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) {
    PR_FAIL(kPermissionDenied, "checkpoint.dir ", dir, ": cannot create the folder: ",
            error.message(), "; choose a writable folder");
  }
  const std::string path = checkpoint_path(dir, state.step);
  const std::string temporary = path + ".tmp";
  const std::string bytes = serialize(state);
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_os("open", temporary);
  try {
    write_all(fd, bytes, temporary);
    if (::fsync(fd) != 0) fail_os("fsync", temporary);
  } catch (...) {
    ::close(fd);
    ::unlink(temporary.c_str());
    throw;
  }
  if (::close(fd) != 0) fail_os("close", temporary);
  if (::rename(temporary.c_str(), path.c_str()) != 0) fail_os("rename", path);
  fsync_path(dir, O_RDONLY | O_DIRECTORY);  // makes the rename itself durable
  std::vector<std::string> all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove(all[i], error);
}

CheckpointState read_checkpoint(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) PR_FAIL(kNotFound, "checkpoint ", path, ": cannot open it (missing or unreadable)");
  std::ostringstream buffer;
  buffer << file.rdbuf();
  const std::string bytes = buffer.str();
  if (bytes.size() < kMagicSize + 8 + kDigestSize || bytes.compare(0, kMagicSize, kMagic) != 0) {
    fail_bad(path, bytes.size() < kMagicSize + 8 + kDigestSize
                       ? str_cat("only ", bytes.size(), " bytes: truncated")
                       : std::string("not a petaring checkpoint (bad magic)"));
  }
  const size_t body = bytes.size() - kDigestSize;
  if (sha256(bytes.data(), body) != bytes.substr(body)) {
    fail_bad(path, str_cat("checksum mismatch (", bytes.size(),
                           " bytes): the file is truncated or corrupted"));
  }
  const uint64_t meta_size = read_u64(bytes, kMagicSize);
  if (meta_size > body - kMagicSize - 8) fail_bad(path, "metadata runs past the end");
  nlohmann::json meta = nlohmann::json::parse(bytes.substr(kMagicSize + 8, meta_size), nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) fail_bad(path, "metadata is not JSON");
  CheckpointState state;
  try {
    state.step = meta.at("step").get<int64_t>();
    state.position.epoch = meta.at("epoch").get<int64_t>();
    state.position.sample = meta.at("sample").get<int64_t>();
    state.seed = meta.at("seed").get<uint64_t>();
    state.world_size = meta.at("world_size").get<int>();
    state.global_batch = meta.at("global_batch").get<int64_t>();
    state.total_steps = meta.at("total_steps").get<int64_t>();
    state.recipe_hash = meta.at("recipe_hash").get<std::string>();
    state.recipe_yaml = meta.at("recipe").get<std::string>();
    state.model = meta.at("model").get<std::string>();
    state.rng_state = meta.at("rng_state").get<std::string>();
    size_t at = kMagicSize + 8 + meta_size;
    for (const auto& tensor : meta.at("tensors")) {
      const size_t count = tensor.at("count").get<size_t>();
      if (count > (body - at) / sizeof(float)) fail_bad(path, "tensor data runs past the end");
      std::vector<float> values(count);
      std::memcpy(values.data(), bytes.data() + at, count * sizeof(float));
      at += count * sizeof(float);
      state.tensors.emplace_back(tensor.at("name").get<std::string>(), std::move(values));
    }
    if (at != body) fail_bad(path, str_cat(body - at, " bytes left over after the tensors"));
  } catch (const nlohmann::json::exception& e) {
    fail_bad(path, str_cat("metadata lacks a field: ", e.what()));
  }
  return state;
}

CheckpointState read_latest_checkpoint(const std::string& dir, std::string* path) {
  std::vector<std::string> all = list_checkpoints(dir);
  std::string skipped;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      CheckpointState state = read_checkpoint(*it);
      *path = *it;
      return state;
    } catch (const Error& e) {
      PR_LOG(kWarn) << e.what() << "; falling back to the previous checkpoint";
      skipped += str_cat(skipped.empty() ? "" : ", ", *it);
    }
  }
  PR_FAIL(kNotFound, "no usable checkpoint in ", dir,
          skipped.empty() ? std::string(" (no step-*.ckpt files)") : str_cat(" (bad: ", skipped, ")"),
          "; check the folder, or train without --resume");
}

}  // namespace petaring
