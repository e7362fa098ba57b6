// petaring plot METRICS.jsonl --out loss.svg|loss.png [--width W --height H] [--title T]
//
// Draws the loss and throughput curves of a `petaring train --metrics` file.
#include <cstdio>

#include "cli/commands.h"
#include "trainer/plot.h"

namespace petaring::cli {
namespace {

struct PlotArgs {
  std::string metrics;
  std::string out;
  std::string title;
  int width = 960;
  int height = 640;
};

int run_plot(const PlotArgs& args) {
  MetricsSeries series = read_metrics(args.metrics);
  if (!args.title.empty()) series.title = args.title;
  plot_metrics(series, args.out, args.width, args.height);
  std::printf("%s: %zu steps, loss %.4g -> %.4g\n", args.out.c_str(), series.step.size(),
              series.loss.front(), series.loss.back());
  return 0;
}

}  // namespace

void register_plot(CLI::App& app, CommandTable& table) {
  auto args = std::make_shared<PlotArgs>();
  CLI::App* sub = app.add_subcommand("plot", "draw the loss and throughput curves of a metrics file");
  sub->add_option("metrics", args->metrics, "JSONL file from petaring train --metrics")->required();
  sub->add_option("--out", args->out, "picture to write: .svg or .png")->required();
  sub->add_option("--title", args->title, "title (default: the metrics file's name)");
  sub->add_option("--width", args->width, "width in pixels")->check(CLI::Range(200, 8000));
  sub->add_option("--height", args->height, "height in pixels")->check(CLI::Range(200, 8000));
  table.entries.emplace_back(sub, [args] { return run_plot(*args); });
}

}  // namespace petaring::cli
