// Rank-prefixed logging with levels.
//
//   PR_LOG(kInfo) << "ring allreduce over " << n << " ranks";
//   -> "[rank 1] I 12:03:04.512 collectives/ring.cc:88] ring allreduce over 2 ranks"
//
// Lines go to stderr, whole lines at a time (one write per line, so ranks sharing a
// terminal do not interleave mid-line). The level comes from set_log_level() or the
// PETARING_LOG environment variable (debug, info, warn, error); default info.
#pragma once

#include <sstream>
#include <string_view>

namespace petaring {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error", "off"; returns false when unknown.
bool parse_log_level(std::string_view text, LogLevel* level);
// The rank shown in every line; -1 (the default) prints no rank.
void set_log_rank(int rank);

namespace detail {
class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  template <typename T>
  LogLine& operator<<(const T& value) {
    out_ << value;
    return *this;
  }

 private:
  std::ostringstream out_;
};
}  // namespace detail

}  // namespace petaring

#define PR_LOG(level)                                                  \
  if (::petaring::LogLevel::level < ::petaring::log_level()) {         \
  } else                                                               \
    ::petaring::detail::LogLine(::petaring::LogLevel::level, __FILE__, __LINE__)
