// Plots of a training run's metrics (the JSONL file `petaring train --metrics` writes):
// the loss (each logged step, an exponential moving average over it, and the test loss
// of each evaluation) above the throughput (samples/s or tokens/s), against the step,
// with labelled axes and ticks. Drawn with cairo as SVG or PNG.
#pragma once

#include <string>
#include <vector>

namespace petaring {

struct MetricsSeries {
  std::vector<double> step, loss, throughput;  // one entry per "step" record
  std::vector<double> eval_step, eval_loss;    // one per "eval" record
  std::string throughput_unit = "samples/s";   // or "tokens/s"
  std::string title;                           // e.g. the file name
};

// Reads a metrics JSONL file. Throws kNotFound when missing; kInvalidArgument naming the
// file and line for a line that is not JSON, or when the file holds no "step" record.
MetricsSeries read_metrics(const std::string& path);

// Curve colours (RGB in [0, 1]), for tests that look for them in the output.
struct PlotColors {
  static constexpr double kLoss[3] = {0.122, 0.467, 0.706};        // blue
  static constexpr double kEval[3] = {0.839, 0.153, 0.157};        // red
  static constexpr double kThroughput[3] = {0.173, 0.627, 0.173};  // green
};

// Draws `series` to `out_path`, SVG or PNG by its extension (.svg, .png), width x height
// pixels (points for SVG). Throws kInvalidArgument for another extension and
// kPermissionDenied / kFailedPrecondition when the file cannot be written.
void plot_metrics(const MetricsSeries& series, const std::string& out_path, int width = 960,
                  int height = 640);

}  // namespace petaring
