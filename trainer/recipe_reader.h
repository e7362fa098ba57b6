// Internal to trainer/recipe*.cc: turns YAML nodes into typed values and every problem
// into the one-line Error(kInvalidArgument) described in trainer/recipe.h:
//   <file>:<line>: <yaml.path>: <what is wrong>; <what to do>
// or, when the value came from a --set override,
//   --set <override>: <yaml.path>: <what is wrong>
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace petaring::recipe_detail {

// The closest of `known` to `word` (edit distance, ignoring case), or "" when none is
// close enough to be a plausible typo.
std::string closest_word(std::string_view word, const std::vector<std::string>& known);
// "did you mean 'x'?" when a close word exists, else "allowed: a, b, c" (`label` names
// the list, e.g. "allowed" or "known keys").
std::string suggestion(std::string_view word, const std::vector<std::string>& known,
                       std::string_view label);
// How a value reads in a message: 12, "abc", the string "12", a map, a list, nothing.
std::string describe(const YAML::Node& node);

// Where messages point: the source name and the overrides that replaced parts of the tree.
class Context {
 public:
  explicit Context(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }
  // Records that `path` (e.g. "training.batch_size") was set by the override `text`.
  void add_override(std::string path, std::string text);
  // Throws the one-line error for `path`. `at` gives the line (0-based mark + 1, line 1
  // when it has none), unless an override set `path` or a parent of it: then the
  // message names the override instead. An empty `path` means the whole document.
  [[noreturn]] void fail(const YAML::Node& at, std::string_view path, std::string_view what) const;
  [[noreturn]] void fail_line(int line, std::string_view path, std::string_view what) const;

 private:
  std::string source_;
  std::vector<std::pair<std::string, std::string>> overrides_;  // (path, text), in order
};

// Ranges for numbers, spelled in messages as "expected <text>, got ...".
enum class NumberRule { kPositive, kNonNegative, kUnitInterval };

// One section of the recipe (a map such as `optimizer:`), checked for unknown keys on
// construction; its getters leave the output untouched when the key is absent.
class SectionReader {
 public:
  // `key` is the section's key node (for its line), `value` the map under it.
  SectionReader(const Context& context, std::string name, const YAML::Node& key,
                const YAML::Node& value, std::vector<std::string> known_keys);

  bool has(const std::string& key) const { return entries_.count(key) > 0; }
  std::string path(const std::string& key) const { return name_ + "." + key; }
  // Fails naming `key` (at its line) or, when absent, the section's line.
  [[noreturn]] void fail(const std::string& key, std::string_view what) const;

  void get_int(const std::string& key, int64_t min, int64_t* out) const;
  void get_uint(const std::string& key, uint64_t* out) const;
  void get_number(const std::string& key, NumberRule rule, double* out) const;
  void get_bool(const std::string& key, bool* out) const;
  void get_string(const std::string& key, std::string* out) const;
  void get_enum(const std::string& key, const std::vector<std::string>& allowed,
                std::string* out) const;
  // A list whose every entry is an integer >= `min` (the caller checks its length).
  void get_int_list(const std::string& key, int64_t min, std::vector<int64_t>* out) const;
  // A list whose every entry is a number obeying `rule` (the caller checks its length).
  void get_number_list(const std::string& key, NumberRule rule, std::vector<double>* out) const;
  // "2GiB", "512 MiB", "1.5GB" or a plain integer number of bytes, at least `min`.
  void get_bytes(const std::string& key, uint64_t min, uint64_t* out) const;
  // Fails naming entry `index` of the list under `key` ("model.layers[2]"), at its line.
  [[noreturn]] void fail_item(const std::string& key, size_t index, std::string_view what) const;

 private:
  const YAML::Node& value_of(const std::string& key) const { return entries_.at(key).second; }
  [[noreturn]] void fail_value(const std::string& key, std::string_view expected) const;

  const Context& context_;
  std::string name_;
  YAML::Node key_;
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> entries_;  // key -> (key, value)
};

}  // namespace petaring::recipe_detail
