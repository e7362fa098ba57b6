#include "trainer/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace petaring {
namespace {

// Tick positions covering [lo, hi]: about `target` of them at 1, 2 or 5 x 10^k.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

std::string tick_label(double value) {
  char text[32];
  const double a = std::fabs(value);
  if (a >= 1e6) {
    std::snprintf(text, sizeof(text), "%gM", value / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(text, sizeof(text), "%gk", value / 1e3);
  } else {
    std::snprintf(text, sizeof(text), "%g", value);
  }
  return text;
}

struct Range {
  double lo = 0, hi = 1;
};

Range range_of(const std::vector<double>& a, const std::vector<double>& b, bool from_zero) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* values : {&a, &b}) {
    for (double v : *values) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!std::isfinite(lo)) return {};
  if (from_zero) lo = std::min(lo, 0.0);
  if (hi - lo < 1e-12) {
    hi += 0.5 * std::max(1.0, std::fabs(hi));
    lo -= from_zero ? 0.0 : 0.5 * std::max(1.0, std::fabs(lo));
  }
  const double pad = 0.05 * (hi - lo);
  return {from_zero && lo >= 0 ? lo : lo - pad, hi + pad};
}

// One panel: a frame at (x, y, w, h) in device units with axes for `xr` and `yr`.
struct Panel {
  cairo_t* cr;
  double x, y, w, h;
  Range xr, yr;
  double px(double v) const { return x + (v - xr.lo) / (xr.hi - xr.lo) * w; }
  double py(double v) const { return y + h - (v - yr.lo) / (yr.hi - yr.lo) * h; }
};

void text_at(cairo_t* cr, const std::string& text, double x, double y, double align_x, double align_y) {
  cairo_text_extents_t extents;
  cairo_text_extents(cr, text.c_str(), &extents);
  cairo_move_to(cr, x - align_x * extents.width - extents.x_bearing,
                y - align_y * extents.height - extents.y_bearing);
  cairo_show_text(cr, text.c_str());
}

void draw_axes(const Panel& p, const std::string& x_label, const std::string& y_label) {
  cairo_t* cr = p.cr;
  cairo_set_font_size(cr, 12);
  // Grid and ticks.
  for (double t : nice_ticks(p.yr.lo, p.yr.hi, 5)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, p.x, p.py(t));
    cairo_line_to(cr, p.x + p.w, p.py(t));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, p.x - 5, p.py(t));
    cairo_line_to(cr, p.x, p.py(t));
    cairo_stroke(cr);
    text_at(cr, tick_label(t), p.x - 8, p.py(t), 1.0, 0.5);
  }
  for (double t : nice_ticks(p.xr.lo, p.xr.hi, 8)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, p.px(t), p.y);
    cairo_line_to(cr, p.px(t), p.y + p.h);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, p.px(t), p.y + p.h);
    cairo_line_to(cr, p.px(t), p.y + p.h + 5);
    cairo_stroke(cr);
    text_at(cr, tick_label(t), p.px(t), p.y + p.h + 8, 0.5, 0.0);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, p.x, p.y, p.w, p.h);
  cairo_stroke(cr);
  cairo_set_font_size(cr, 13);
  text_at(cr, x_label, p.x + p.w / 2, p.y + p.h + 26, 0.5, 0.0);
  cairo_save(cr);
  cairo_translate(cr, p.x - 58, p.y + p.h / 2);
  cairo_rotate(cr, -M_PI / 2);
  text_at(cr, y_label, 0, 0, 0.5, 0.5);
  cairo_restore(cr);
}

void draw_line(const Panel& p, const std::vector<double>& xs, const std::vector<double>& ys,
               const double rgb[3], double alpha, double width) {
  cairo_t* cr = p.cr;
  cairo_save(cr);
  cairo_rectangle(cr, p.x, p.y, p.w, p.h);
  cairo_clip(cr);
  cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], alpha);
  cairo_set_line_width(cr, width);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  bool pen_down = false;
  for (size_t i = 0; i < xs.size() && i < ys.size(); ++i) {
    if (!std::isfinite(ys[i])) {
      pen_down = false;
      continue;
    }
    if (pen_down) {
      cairo_line_to(cr, p.px(xs[i]), p.py(ys[i]));
    } else {
      cairo_move_to(cr, p.px(xs[i]), p.py(ys[i]));
    }
    pen_down = true;
  }
  if (xs.size() == 1) cairo_line_to(cr, p.px(xs[0]) + 0.1, p.py(ys[0]));
  cairo_stroke(cr);
  cairo_restore(cr);
}

void draw_points(const Panel& p, const std::vector<double>& xs, const std::vector<double>& ys,
                 const double rgb[3]) {
  cairo_set_source_rgb(p.cr, rgb[0], rgb[1], rgb[2]);
  for (size_t i = 0; i < xs.size() && i < ys.size(); ++i) {
    cairo_arc(p.cr, p.px(xs[i]), p.py(ys[i]), 4, 0, 2 * M_PI);
    cairo_fill(p.cr);
  }
}

// Legend entries (colour, label) in the top right corner of a panel.
void draw_legend(const Panel& p, const std::vector<std::pair<const double*, std::string>>& entries) {
  cairo_set_font_size(p.cr, 12);
  double y = p.y + 16;
  for (const auto& [rgb, label] : entries) {
    cairo_set_source_rgb(p.cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(p.cr, p.x + p.w - 210, y - 6, 18, 4);
    cairo_fill(p.cr);
    cairo_set_source_rgb(p.cr, 0.2, 0.2, 0.2);
    text_at(p.cr, label, p.x + p.w - 186, y - 4, 0.0, 0.5);
    y += 18;
  }
}

std::vector<double> moving_average(const std::vector<double>& values) {
  // EMA with a span of ~1/20 of the run (at least 1 point), bias-corrected at the start.
  const double span = std::max(1.0, static_cast<double>(values.size()) / 20.0);
  const double alpha = 2.0 / (span + 1.0);
  std::vector<double> out;
  double average = 0, weight = 0;
  for (double v : values) {
    average = (1 - alpha) * average + alpha * v;
    weight = (1 - alpha) * weight + alpha;
    out.push_back(average / weight);
  }
  return out;
}

void render(cairo_t* cr, const MetricsSeries& s, int width, int height) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_set_font_size(cr, 16);
  text_at(cr, s.title, width / 2.0, 14, 0.5, 0.0);
  const double left = 90, right = 30, top = 44, gap = 64, bottom = 56;
  const double panel_h = (height - top - gap - bottom) * 0.5;
  Range xr = range_of(s.step, s.eval_step, false);
  if (!s.step.empty()) xr = Range{std::min(s.step.front(), xr.lo), std::max(s.step.back(), xr.hi)};
  Panel loss{cr, left, top, width - left - right, panel_h, xr, range_of(s.loss, s.eval_loss, false)};
  Panel speed{cr, left, top + panel_h + gap, width - left - right, panel_h, xr,
              range_of(s.throughput, {}, true)};
  draw_axes(loss, "step", "loss");
  draw_line(loss, s.step, s.loss, PlotColors::kLoss, 0.35, 1.0);
  draw_line(loss, s.step, moving_average(s.loss), PlotColors::kLoss, 1.0, 2.0);
  draw_points(loss, s.eval_step, s.eval_loss, PlotColors::kEval);
  std::vector<std::pair<const double*, std::string>> legend = {{PlotColors::kLoss, "training loss"}};
  if (!s.eval_step.empty()) legend.emplace_back(PlotColors::kEval, "test loss");
  draw_legend(loss, legend);
  draw_axes(speed, "step", s.throughput_unit);
  draw_line(speed, s.step, s.throughput, PlotColors::kThroughput, 1.0, 2.0);
  draw_legend(speed, {{PlotColors::kThroughput, "throughput (" + s.throughput_unit + ")"}});
}

void check_status(cairo_status_t status, const std::string& path) {
  if (status == CAIRO_STATUS_SUCCESS) return;
  if (status == CAIRO_STATUS_WRITE_ERROR || status == CAIRO_STATUS_FILE_NOT_FOUND) {
    PR_FAIL(kPermissionDenied, "--out ", path, ": cannot write the file (",
            cairo_status_to_string(status), "); check that its folder exists and is writable");
  }
  PR_FAIL(kFailedPrecondition, "--out ", path, ": cairo failed: ", cairo_status_to_string(status));
}

}  // namespace

MetricsSeries read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) PR_FAIL(kNotFound, path, ": cannot open the metrics file (write one with petaring train --metrics FILE)");
  MetricsSeries s;
  s.title = std::filesystem::path(path).filename().string();
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object()) {
      PR_FAIL(kInvalidArgument, path, ":", number, ": not a JSON object; is this a petaring metrics file?");
    }
    const std::string event = record.value("event", "");
    if (event == "step" && record.contains("step") && record.contains("loss")) {
      s.step.push_back(record["step"].get<double>());
      s.loss.push_back(record["loss"].is_number() ? record["loss"].get<double>() : NAN);
      if (record.contains("tokens_per_s")) {
        s.throughput_unit = "tokens/s";
        s.throughput.push_back(record["tokens_per_s"].get<double>());
      } else {
        s.throughput.push_back(record.value("samples_per_s", NAN));
      }
    } else if (event == "eval" && record.contains("test_loss")) {
      s.eval_step.push_back(record.value("step", 0.0));
      s.eval_loss.push_back(record["test_loss"].get<double>());
    }
  }
  if (s.step.empty()) {
    PR_FAIL(kInvalidArgument, path, ": no \"step\" records to plot; train with --metrics FILE "
            "(and training.log_every small enough to log some steps)");
  }
  return s;
}

void plot_metrics(const MetricsSeries& series, const std::string& out_path, int width, int height) {
  const std::string ext = std::filesystem::path(out_path).extension().string();
  if (ext != ".svg" && ext != ".png") {
    PR_FAIL(kInvalidArgument, "--out ", out_path, ": unknown picture type '", ext,
            "'; name the file .svg or .png");
  }
  cairo_surface_t* surface = ext == ".svg"
                                 ? cairo_svg_surface_create(out_path.c_str(), width, height)
                                 : cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  std::unique_ptr<cairo_surface_t, void (*)(cairo_surface_t*)> owner(surface, cairo_surface_destroy);
  check_status(cairo_surface_status(surface), out_path);
  cairo_t* cr = cairo_create(surface);
  render(cr, series, width, height);
  const cairo_status_t drawn = cairo_status(cr);
  cairo_destroy(cr);
  check_status(drawn, out_path);
  if (ext == ".png") {
    check_status(cairo_surface_write_to_png(surface, out_path.c_str()), out_path);
  } else {
    cairo_surface_finish(surface);
    check_status(cairo_surface_status(surface), out_path);
  }
}

}  // namespace petaring
