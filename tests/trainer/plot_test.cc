// petaring plot's drawing (trainer/plot.h): a small metrics file becomes a valid SVG and
// PNG holding the loss, test-loss and throughput curves in their colours, with every step
// on the curves; bad input names the file and line.
#include "trainer/plot.h"

#include <cairo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "runtime/error.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

class PlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("petaring_plot_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    std::ofstream out(dir_ / "m.jsonl");
    for (int step = 1; step <= 12; ++step) {
      out << R"({"event":"step","step":)" << step << R"(,"loss":)" << 2.5 / step
          << R"(,"lr":0.01,"samples_per_s":)" << 1000 + 50 * step + (step % 3) * 40 << "}\n";
    }
    out << R"({"event":"eval","epoch":1,"step":12,"test_accuracy":0.7,"test_loss":0.3})" << "\n";
    out << R"({"event":"final","steps":12,"loss":0.2})" << "\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// cairo's SVG spelling of an RGB colour: "rgb(12.2%,46.7%,70.6%)".
std::string svg_color(const double rgb[3]) {
  std::string out = "rgb(";
  for (int i = 0; i < 3; ++i) {
    std::ostringstream value;
    value << std::round(rgb[i] * 1000) / 10;
    out += value.str() + (i < 2 ? "%," : "%)");
  }
  return out;
}

TEST_F(PlotTest, ReadsStepAndEvalRecords) {
  MetricsSeries s = read_metrics(path("m.jsonl"));
  ASSERT_EQ(s.step.size(), 12u);
  EXPECT_DOUBLE_EQ(s.loss[3], 2.5 / 4);
  EXPECT_DOUBLE_EQ(s.throughput[0], 1090);
  EXPECT_EQ(s.throughput_unit, "samples/s");
  EXPECT_EQ(s.eval_step, (std::vector<double>{12}));
  EXPECT_EQ(s.title, "m.jsonl");
}

TEST_F(PlotTest, SvgHoldsTheCurvesWithEveryStep) {
  plot_metrics(read_metrics(path("m.jsonl")), path("loss.svg"), 800, 500);
  const std::string svg = read_file(path("loss.svg"));
  ASSERT_EQ(svg.rfind("<?xml", 0), 0u) << svg.substr(0, 100);
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("width=\"800pt\" height=\"500pt\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos) << "unfinished file";
  // The loss (raw and averaged) and throughput polylines: one point per step (M + 11 L).
  for (const double* color : {PlotColors::kLoss, PlotColors::kThroughput}) {
    const std::regex path_re("<path[^>]*stroke:" + std::regex_replace(svg_color(color), std::regex(R"([()%.])"), R"(\$&)") +
                             R"([^>]*d=\"([^\"]*)\")");
    int curves = 0;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), path_re); it != std::sregex_iterator(); ++it) {
      const std::string d = (*it)[1];
      EXPECT_EQ(std::count(d.begin(), d.end(), 'L'), 11) << d;
      ++curves;
    }
    EXPECT_EQ(curves, color == PlotColors::kLoss ? 2 : 1) << svg_color(color);
  }
  EXPECT_NE(svg.find("fill:" + svg_color(PlotColors::kEval)), std::string::npos) << "no test-loss point";
  // Tick labels and axis titles are drawn as glyphs: there are many.
  EXPECT_GT(std::count(svg.begin(), svg.end(), '\n'), 100);
}

TEST_F(PlotTest, PngIsAValidImageWithTheCurveColours) {
  plot_metrics(read_metrics(path("m.jsonl")), path("loss.png"), 640, 480);
  const std::string png = read_file(path("loss.png"));
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  cairo_surface_t* image = cairo_image_surface_create_from_png(path("loss.png").c_str());
  ASSERT_EQ(cairo_surface_status(image), CAIRO_STATUS_SUCCESS);
  EXPECT_EQ(cairo_image_surface_get_width(image), 640);
  EXPECT_EQ(cairo_image_surface_get_height(image), 480);
  // Pixels in exactly each curve's colour (the curves and legend are drawn opaque).
  auto count = [&](const double rgb[3]) {
    const unsigned char* data = cairo_image_surface_get_data(image);
    const int stride = cairo_image_surface_get_stride(image);
    int found = 0;
    for (int y = 0; y < 480; ++y) {
      for (int x = 0; x < 640; ++x) {
        uint32_t pixel;
        std::memcpy(&pixel, data + y * stride + x * 4, 4);
        const int r = (pixel >> 16) & 255, g = (pixel >> 8) & 255, b = pixel & 255;
        found += std::abs(r - std::lround(rgb[0] * 255)) <= 1 && std::abs(g - std::lround(rgb[1] * 255)) <= 1 &&
                 std::abs(b - std::lround(rgb[2] * 255)) <= 1;
      }
    }
    return found;
  };
  EXPECT_GT(count(PlotColors::kLoss), 200);
  EXPECT_GT(count(PlotColors::kThroughput), 200);
  EXPECT_GT(count(PlotColors::kEval), 20);
  cairo_surface_destroy(image);
}

TEST_F(PlotTest, BadInputIsNamed) {
  std::ofstream(path("bad.jsonl")) << R"({"event":"step","step":1,"loss":1})" << "\nnot json\n";
  try {
    read_metrics(path("bad.jsonl"));
    ADD_FAILURE() << "accepted a broken line";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2: not a JSON object"), std::string::npos) << e.what();
  }
  std::ofstream(path("empty.jsonl")) << R"({"event":"final","steps":0})" << "\n";
  EXPECT_THROW(read_metrics(path("empty.jsonl")), Error);
  EXPECT_THROW(read_metrics(path("missing.jsonl")), Error);
  try {
    plot_metrics(read_metrics(path("m.jsonl")), path("loss.jpg"));
    ADD_FAILURE() << "accepted .jpg";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(".svg or .png"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace petaring
