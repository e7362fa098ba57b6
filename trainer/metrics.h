// Training output: a live progress line (on a terminal) or plain lines, and an optional
// JSONL metrics file. Only rank 0 reports; other ranks construct a silent reporter.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace petaring {

class Reporter {
 public:
  // `metrics_path` empty: no file. `active` false: prints and writes nothing. `append`:
  // add to an existing file (a resumed run) instead of starting it afresh.
  Reporter(bool active, const std::string& metrics_path, bool append = false);
  ~Reporter();

  struct StepInfo {
    int64_t epoch = 0, epochs = 0;
    int64_t step = 0, total_steps = 0;  // global step count, 1-based
    double loss = 0;
    double lr = 0;         // the scheduled rate of this step
    double grad_norm = -1;  // global gradient norm before clipping; < 0: not reported
    double samples_per_s = 0;  // logged steps: since the previous logged step; else the run's
    double tokens_per_s = -1;  // < 0: the data is not text; the line shows samples/s
    double comm_s = -1;        // gradient allreduce time of this step; < 0: not reported
    double eta_s = 0;
    double elapsed_s = 0;
  };
  // Updates the live line (terminal; at most 5 times a second, and on logged steps)
  // and, when `logged`, prints a plain line (no terminal) and appends a JSON object
  // with "event": "step".
  void step(const StepInfo& info, bool logged);
  // Any other event: appended to the metrics file with its "event" key; `line` printed.
  void event(const nlohmann::json& record, const std::string& line);

 private:
  void write(const nlohmann::json& record);
  void clear_live_line();

  bool active_;
  bool terminal_;
  bool live_line_shown_ = false;
  double last_live_s_ = -1;  // elapsed_s of the last live-line update
  std::ofstream metrics_;
  std::string metrics_path_;
};

// "1:02:03", "4:05" (hours only when needed).
std::string format_duration(double seconds);

}  // namespace petaring
