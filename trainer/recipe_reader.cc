// Typed reads of recipe values and the one-line error messages (trainer/recipe_reader.h).
#include "trainer/recipe_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "device/device.h"
#include "runtime/error.h"

namespace petaring::recipe_detail {
namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& word : words) out += (out.empty() ? "" : ", ") + word;
  return out;
}

// Plain scalars only: a quoted "12" is a string, not a number.
bool is_plain(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

bool parse_int(std::string_view text, int64_t* out) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size();
}

// YAML's .inf/.nan spellings, or a decimal number; nothing else (no hex, no "inf").
bool parse_double(std::string_view text, double* out) {
  std::string word = lower(text);
  if (word == ".inf" || word == "+.inf") return *out = HUGE_VAL, true;
  if (word == "-.inf") return *out = -HUGE_VAL, true;
  if (word == ".nan") return *out = std::nan(""), true;
  if (word.empty() || word.find_first_not_of("0123456789+-.e") != std::string::npos) return false;
  char* end = nullptr;
  *out = std::strtod(word.c_str(), &end);
  return end == word.c_str() + word.size();
}

bool number_ok(NumberRule rule, double value) {
  if (!std::isfinite(value)) return false;
  switch (rule) {
    case NumberRule::kPositive: return value > 0;
    case NumberRule::kNonNegative: return value >= 0;
    case NumberRule::kUnitInterval: return value >= 0 && value < 1;
  }
  return false;
}

const char* number_text(NumberRule rule) {
  switch (rule) {
    case NumberRule::kPositive: return "a finite number > 0";
    case NumberRule::kNonNegative: return "a finite number >= 0";
    case NumberRule::kUnitInterval: return "a number in [0, 1)";
  }
  return "a number";
}

}  // namespace

std::string closest_word(std::string_view word, const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  const std::string target = lower(word);
  for (const auto& candidate : known) {
    size_t distance = edit_distance(target, lower(candidate));
    if (distance < best_distance) best = candidate, best_distance = distance;
  }
  // A typo changes a few letters; a different word changes most of them.
  size_t limit = (std::max(target.size(), best.size()) + 1) / 2;
  if (target.size() >= 3 && best.find(target) == 0) limit = best.size();  // a prefix
  return best_distance <= limit ? best : "";
}

std::string suggestion(std::string_view word, const std::vector<std::string>& known,
                       std::string_view label) {
  std::string close = closest_word(word, known);
  std::string list = str_cat(label, ": ", join(known));
  return close.empty() ? list : str_cat("did you mean '", close, "'? (", list, ")");
}

std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing";
  if (node.IsMap()) return "a map";
  if (node.IsSequence()) return "a list";
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return str_cat("the string \"", text, "\"");
  double number;
  if (parse_double(text, &number)) return text;
  return str_cat("\"", text, "\"");
}

void Context::add_override(std::string path, std::string text) {
  overrides_.emplace_back(std::move(path), std::move(text));
}

void Context::fail(const YAML::Node& at, std::string_view path, std::string_view what) const {
  const YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
  int line = mark.is_null() || mark.line < 0 ? 1 : mark.line + 1;
  fail_line(line, path, what);
}

void Context::fail_line(int line, std::string_view path, std::string_view what) const {
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it) {
    const std::string& set = it->first;
    bool under = path.substr(0, set.size()) == set &&
                 (path.size() == set.size() || path[set.size()] == '.' || path[set.size()] == '[');
    if (under) PR_FAIL(kInvalidArgument, "--set ", it->second, ": ", path, ": ", what);
  }
  if (path.empty()) PR_FAIL(kInvalidArgument, source_, ":", line, ": ", what);
  PR_FAIL(kInvalidArgument, source_, ":", line, ": ", path, ": ", what);
}

SectionReader::SectionReader(const Context& context, std::string name, const YAML::Node& key,
                             const YAML::Node& value, std::vector<std::string> known_keys)
    : context_(context), name_(std::move(name)), key_(key) {
  if (!value.IsMap()) {
    context_.fail(key_, name_,
                  str_cat("expected a map of ", name_, " settings, got ", describe(value),
                          "; indent its keys under `", name_, ":`, or write `", name_,
                          ": {}` to keep every default"));
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    const YAML::Node entry = it->first;
    if (!entry.IsScalar()) {
      context_.fail(entry, name_, "keys must be plain names; write `key: value`");
    }
    const std::string& word = entry.Scalar();
    if (std::find(known_keys.begin(), known_keys.end(), word) == known_keys.end()) {
      context_.fail(entry, path(word),
                    str_cat("unknown key; ", suggestion(word, known_keys, "known keys")));
    }
    entries_.emplace(word, std::make_pair(entry, it->second));
  }
}

void SectionReader::fail(const std::string& key, std::string_view what) const {
  auto it = entries_.find(key);
  context_.fail(it == entries_.end() ? key_ : it->second.first, path(key), what);
}

void SectionReader::fail_value(const std::string& key, std::string_view expected) const {
  const YAML::Node& node = value_of(key);
  const bool quoted = node.IsScalar() && node.Tag() == "!";
  fail(key, str_cat("expected ", expected, ", got ", describe(node),
                    quoted ? "; remove the quotes" : ""));
}

void SectionReader::get_int(const std::string& key, int64_t min, int64_t* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  int64_t value;
  if (!is_plain(node) || !parse_int(node.Scalar(), &value) || value < min) {
    fail_value(key, str_cat("an integer >= ", min));
  }
  *out = value;
}

void SectionReader::get_uint(const std::string& key, uint64_t* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  std::string_view text = is_plain(node) ? std::string_view(node.Scalar()) : "";
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    fail_value(key, "an integer >= 0");
  }
  *out = value;
}

void SectionReader::get_number(const std::string& key, NumberRule rule, double* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  double value;
  if (!is_plain(node) || !parse_double(node.Scalar(), &value) || !number_ok(rule, value)) {
    fail_value(key, number_text(rule));
  }
  *out = value;
}

void SectionReader::get_bool(const std::string& key, bool* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  std::string word = is_plain(node) ? lower(node.Scalar()) : "";
  if (word == "true" || word == "yes" || word == "on") {
    *out = true;
  } else if (word == "false" || word == "no" || word == "off") {
    *out = false;
  } else {
    std::string close = node.IsScalar() ? closest_word(node.Scalar(), {"true", "false"}) : "";
    fail(key, str_cat("expected true or false, got ", describe(node),
                      close.empty() ? "" : str_cat("; did you mean '", close, "'?")));
  }
}

void SectionReader::get_string(const std::string& key, std::string* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  if (!node.IsScalar()) fail_value(key, "a string");
  *out = node.Scalar();
}

void SectionReader::get_enum(const std::string& key, const std::vector<std::string>& allowed,
                             std::string* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  if (!node.IsScalar()) fail_value(key, str_cat("one of: ", join(allowed)));
  if (std::find(allowed.begin(), allowed.end(), node.Scalar()) == allowed.end()) {
    fail(key, str_cat("unknown value ", describe(node), "; ",
                      suggestion(node.Scalar(), allowed, "allowed")));
  }
  *out = node.Scalar();
}

void SectionReader::get_int_list(const std::string& key, int64_t min,
                                 std::vector<int64_t>* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  if (!node.IsSequence()) fail_value(key, "a list of integers such as [784, 256, 10]");
  std::vector<int64_t> values;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node& entry = node[i];
    int64_t value;
    if (!is_plain(entry) || !parse_int(entry.Scalar(), &value) || value < min) {
      fail_item(key, i, str_cat("expected an integer >= ", min, ", got ", describe(entry)));
    }
    values.push_back(value);
  }
  *out = std::move(values);
}

void SectionReader::get_number_list(const std::string& key, NumberRule rule,
                                    std::vector<double>* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  if (!node.IsSequence()) fail_value(key, str_cat("a list of numbers, each ", number_text(rule)));
  std::vector<double> values;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node& entry = node[i];
    double value;
    if (!is_plain(entry) || !parse_double(entry.Scalar(), &value) || !number_ok(rule, value)) {
      fail_item(key, i, str_cat("expected ", number_text(rule), ", got ", describe(entry)));
    }
    values.push_back(value);
  }
  *out = std::move(values);
}

void SectionReader::get_bytes(const std::string& key, uint64_t min, uint64_t* out) const {
  if (!has(key)) return;
  const YAML::Node& node = value_of(key);
  const std::string text = node.IsScalar() ? node.Scalar() : "";
  uint64_t value = 0;
  bool digits_only = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  bool ok = digits_only ? std::from_chars(text.data(), text.data() + text.size(), value).ec ==
                              std::errc()
                        : parse_bytes(text, &value);
  if (!ok || value < min) {
    fail_value(key, str_cat("a byte size such as 2GiB or 512MiB, at least ", format_bytes(min)));
  }
  *out = value;
}

void SectionReader::fail_item(const std::string& key, size_t index, std::string_view what) const {
  context_.fail(value_of(key)[index], str_cat(path(key), "[", index, "]"), what);
}

}  // namespace petaring::recipe_detail
