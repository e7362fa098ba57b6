// The GPT against PyTorch (tests/fixtures/gpt_golden.json from scripts/gen_gpt_golden.py):
// loss and every gradient within 1e-4 relative; and its own contracts: finite
// differences of the whole model, gradient accumulation, the ready-range callbacks and
// config errors.
#include "trainer/gpt.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "device/cpu/cpu_device.h"
#include "tests/trainer/cpu_device_test.h"
#include "runtime/error.h"
#include "trainer/rng.h"

namespace petaring {
namespace {

class GptTest : public testing_trainer::CpuDeviceTest {
 protected:
  // Forward and backward; returns the loss (grads() then hold the gradients).
  float step(Gpt& gpt, Tensor x, Tensor y, const StepOptions& options = {}) {
    Tensor loss = gpt.forward(*queue_, x, y);
    gpt.backward(*queue_, options);
    queue_->synchronize();
    return loss.data<float>()[0];
  }
  float loss_only(Gpt& gpt, Tensor x, Tensor y) {
    Tensor loss = gpt.forward(*queue_, x, y);
    queue_->synchronize();
    return loss.data<float>()[0];
  }
  static std::vector<float> host(Tensor t) {
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  }
};

nlohmann::json load_golden() {
  const std::string path = std::string(PETARING_SOURCE_DIR) + "/tests/fixtures/gpt_golden.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return nlohmann::json::parse(in);
}

GptConfig config_of(const nlohmann::json& j) {
  GptConfig c;
  c.vocab = j["vocab"];
  c.context = j["context"];
  c.layers = j["layers"];
  c.heads = j["heads"];
  c.dim = j["dim"];
  c.tie_embeddings = j["tie_embeddings"];
  return c;
}

// Every gradient element within 1e-4 of PyTorch's, relative to the larger of its own
// magnitude and 1% of its tensor's largest (an element that cancels to ~0 is judged on
// its tensor's scale, where f32 rounding lives).
TEST_F(GptTest, LossAndEveryGradientMatchPyTorch) {
  const nlohmann::json golden = load_golden();
  ASSERT_EQ(golden["cases"].size(), 2u);
  for (const nlohmann::json& tc : golden["cases"]) {
    SCOPED_TRACE(tc["name"].get<std::string>());
    const GptConfig config = config_of(tc["config"]);
    const int64_t batch = tc["batch"];
    Gpt gpt(config, *device_, batch);
    const std::vector<float> params = tc["params"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(params.size()), gpt.num_params());
    std::copy(params.begin(), params.end(), gpt.params().data<float>());
    // The layout is the generator's: same names, shapes and order.
    ASSERT_EQ(tc["names"].size(), gpt.named_params().size());
    for (size_t i = 0; i < gpt.named_params().size(); ++i) {
      EXPECT_EQ(tc["names"][i][0].get<std::string>(), gpt.named_params()[i].name);
    }
    Tensor x = tokens(tc["tokens"].get<std::vector<int32_t>>(), batch);
    Tensor y = tokens(tc["targets"].get<std::vector<int32_t>>(), batch);
    const double loss = step(gpt, x, y);
    const double want_loss = tc["loss"];
    EXPECT_NEAR(loss, want_loss, 1e-4 * std::fabs(want_loss));

    const std::vector<double> want = tc["grads"].get<std::vector<double>>();
    const std::vector<float> got = host(gpt.grads());
    double worst = 0;
    for (const Gpt::Named& p : gpt.named_params()) {
      double largest = 0;
      for (int64_t i = 0; i < p.shape.numel(); ++i) {
        largest = std::max(largest, std::fabs(want[p.offset + i]));
      }
      ASSERT_GT(largest, 0.0) << p.name << " has an all-zero reference gradient";
      for (int64_t i = 0; i < p.shape.numel(); ++i) {
        const double w = want[p.offset + i], g = got[p.offset + i];
        const double scale = std::max(std::fabs(w), 0.01 * largest);
        worst = std::max(worst, std::fabs(g - w) / scale);
        EXPECT_LE(std::fabs(g - w), 1e-4 * scale) << p.name << "[" << i << "]: " << g << " vs " << w;
      }
    }
    RecordProperty("worst_relative_error_" + tc["name"].get<std::string>(), std::to_string(worst));
  }
}

GptConfig tiny() {
  GptConfig c;
  c.vocab = 7;
  c.context = 5;
  c.layers = 2;
  c.heads = 2;
  c.dim = 6;
  return c;
}

// Central differences of the loss in f32 at a sample of parameters from every tensor.
TEST_F(GptTest, BackwardMatchesFiniteDifferences) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    GptConfig config = tiny();
    config.tie_embeddings = tied;
    Gpt gpt(config, *device_, 2);
    gpt.initialize(*queue_, 5);
    float* w = gpt.params().data<float>();
    for (int64_t i = 0; i < gpt.num_params(); ++i) w[i] *= 3.0f;  // away from a flat start
    Tensor x = tokens({1, 2, 3, 4, 0, 6, 5, 1}, 2), y = tokens({2, 3, 4, 0, 6, 5, 1, 1}, 2);
    step(gpt, x, y);
    const std::vector<float> analytic = host(gpt.grads());
    Rng rng(11);
    for (const Gpt::Named& p : gpt.named_params()) {
      for (int k = 0; k < 3; ++k) {
        const int64_t i = p.offset + static_cast<int64_t>(rng.below(p.shape.numel()));
        const float saved = w[i], h = 1e-3f;  // the loss curves fast at small dim
        w[i] = saved + h;
        const double plus = loss_only(gpt, x, y);
        w[i] = saved - h;
        const double minus = loss_only(gpt, x, y);
        w[i] = saved;
        const double numeric = (plus - minus) / (2.0 * h);
        EXPECT_NEAR(analytic[i], numeric, 2e-3 + 2e-2 * std::fabs(numeric)) << p.name;
      }
    }
  }
}


TEST_F(GptTest, AccumulateAddsAndReadyRangesCoverEveryGradientOnce) {
  Gpt gpt(tiny(), *device_, 2);
  gpt.initialize(*queue_, 1);
  Tensor x = tokens({1, 2, 3, 4, 0, 6}, 2), y = tokens({2, 3, 4, 0, 6, 5}, 2);
  std::vector<int> covered(static_cast<size_t>(gpt.num_params()), 0);
  std::vector<int64_t> offsets;
  StepOptions options;
  options.on_grad_ready = [&](int64_t offset, int64_t count, std::shared_ptr<Event> ready) {
    EXPECT_GT(count, 0);
    EXPECT_NE(ready, nullptr);
    offsets.push_back(offset);
    for (int64_t i = offset; i < offset + count; ++i) ++covered[i];
  };
  step(gpt, x, y, options);
  EXPECT_TRUE(std::all_of(covered.begin(), covered.end(), [](int n) { return n == 1; }));
  // ln_f first (the head is tied), the tied wte last: it also collects the embedding's share.
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), gpt.named_params()[gpt.named_params().size() - 2].offset);
  EXPECT_EQ(offsets.back(), 0);
  const std::vector<float> once = host(gpt.grads());

  StepOptions twice;
  twice.accumulate = true;
  twice.grad_scale = 0.5f;
  step(gpt, x, y, twice);  // once + 0.5 once
  const std::vector<float> sum = host(gpt.grads());
  for (size_t i = 0; i < once.size(); ++i) {
    EXPECT_NEAR(sum[i], 1.5f * once[i], 1e-6f + 1e-5f * std::fabs(once[i])) << i;
  }
}

TEST_F(GptTest, RejectsConfigsAndInputsThatDoNotFit) {
  GptConfig bad = tiny();
  bad.dim = 7;
  try {
    Gpt gpt(bad, *device_, 1);
    ADD_FAILURE() << "dim 7 with 2 heads was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of heads 2"), std::string::npos)
        << e.what();
  }
  Gpt gpt(tiny(), *device_, 1);
  Tensor long_x = tokens({1, 2, 3, 4, 5, 6}, 1);  // T 6 > context 5
  EXPECT_THROW(gpt.forward(*queue_, long_x, long_x), Error);
}

}  // namespace
}  // namespace petaring
