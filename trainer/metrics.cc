#include "trainer/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "runtime/error.h"

namespace petaring {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long total = std::lround(seconds);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(text, sizeof(text), "%ld:%02ld", total / 60, total % 60);
  }
  return text;
}

Reporter::Reporter(bool active, const std::string& metrics_path, bool append)
    : active_(active), terminal_(active && ::isatty(STDOUT_FILENO)), metrics_path_(metrics_path) {
  if (active_ && !metrics_path.empty()) {
    metrics_.open(metrics_path, std::ios::out | (append ? std::ios::app : std::ios::trunc));
    if (!metrics_) {
      PR_FAIL(kNotFound, "--metrics ", metrics_path,
              ": cannot open for writing; check that the folder exists and is writable");
    }
  }
}

Reporter::~Reporter() { clear_live_line(); }

void Reporter::clear_live_line() {
  if (live_line_shown_) {
    std::cout << "\r\033[K" << std::flush;
    live_line_shown_ = false;
  }
}

void Reporter::write(const nlohmann::json& record) {
  if (!metrics_.is_open()) return;
  metrics_ << record.dump() << '\n';
  metrics_.flush();  // a crash later loses nothing already reported
  if (!metrics_) PR_FAIL(kFailedPrecondition, "--metrics ", metrics_path_, ": write failed (disk full?)");
}

void Reporter::step(const StepInfo& info, bool logged) {
  if (!active_) return;
  const bool refresh = terminal_ && (logged || info.elapsed_s - last_live_s_ >= 0.2);
  if (!refresh && !logged) return;
  char line[256];
  const bool tokens = info.tokens_per_s >= 0;
  std::snprintf(line, sizeof(line),
                "epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.0f %s/s  ETA %s",
                static_cast<long long>(info.epoch), static_cast<long long>(info.epochs),
                static_cast<long long>(info.step), static_cast<long long>(info.total_steps),
                info.loss, info.lr, tokens ? info.tokens_per_s : info.samples_per_s,
                tokens ? "tokens" : "samples", format_duration(info.eta_s).c_str());
  if (terminal_) {
    std::cout << "\r\033[K" << line << std::flush;
    live_line_shown_ = true;
    last_live_s_ = info.elapsed_s;
  } else if (logged) {
    std::cout << line << '\n' << std::flush;
  }
  if (logged) {
    nlohmann::json record = {{"event", "step"},
                             {"epoch", info.epoch},
                             {"step", info.step},
                             {"loss", info.loss},
                             {"lr", info.lr},
                             {"samples_per_s", info.samples_per_s},
                             {"elapsed_s", info.elapsed_s}};
    if (info.grad_norm >= 0) record["grad_norm"] = info.grad_norm;
    if (info.tokens_per_s >= 0) record["tokens_per_s"] = info.tokens_per_s;
    if (info.comm_s >= 0) record["comm_s"] = info.comm_s;
    write(record);
  }
}

void Reporter::event(const nlohmann::json& record, const std::string& line) {
  if (!active_) return;
  clear_live_line();
  if (!line.empty()) std::cout << line << '\n' << std::flush;
  write(record);
}

}  // namespace petaring
