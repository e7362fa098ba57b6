#include "runtime/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace petaring {
namespace {

LogLevel initial_level() {
  LogLevel level = LogLevel::kInfo;
  if (const char* env = std::getenv("PETARING_LOG")) parse_log_level(env, &level);
  return level;
}

std::atomic<int>& level_storage() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}

std::atomic<int> g_rank{-1};

char level_letter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 'D';
    case LogLevel::kInfo: return 'I';
    case LogLevel::kWarn: return 'W';
    case LogLevel::kError: return 'E';
    case LogLevel::kOff: return '-';
  }
  return '?';
}

// "runtime/log.cc" rather than the absolute build path.
const char* short_path(const char* file) {
  static const char* const kRoots[] = {"/runtime/", "/device/", "/collectives/", "/scheduler/",
                                       "/trainer/", "/cluster/", "/cli/", "/tests/", "/bench/"};
  const char* best = file;
  for (const char* root : kRoots) {
    if (const char* hit = std::strstr(file, root)) best = hit + 1;
  }
  return best;
}

}  // namespace

void set_log_level(LogLevel level) { level_storage().store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(level_storage().load()); }
void set_log_rank(int rank) { g_rank.store(rank); }

bool parse_log_level(std::string_view text, LogLevel* level) {
  if (text == "debug") *level = LogLevel::kDebug;
  else if (text == "info") *level = LogLevel::kInfo;
  else if (text == "warn" || text == "warning") *level = LogLevel::kWarn;
  else if (text == "error") *level = LogLevel::kError;
  else if (text == "off") *level = LogLevel::kOff;
  else return false;
  return true;
}

namespace detail {

LogLine::LogLine(LogLevel level, const char* file, int line) {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  int millis = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm local{};
  localtime_r(&seconds, &local);
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min,
                local.tm_sec, millis);
  int rank = g_rank.load();
  if (rank >= 0) out_ << "[rank " << rank << "] ";
  out_ << level_letter(level) << ' ' << stamp << ' ' << short_path(file) << ':' << line << "] ";
}

LogLine::~LogLine() {
  out_ << '\n';
  std::string text = out_.str();
  // One write(2) per line keeps lines of different ranks whole.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace detail
}  // namespace petaring
