// The transformer kernels (embedding, LayerNorm, GELU, add, causal attention): values at
// known points, and every backward against central finite differences of its forward.
// As in kernel_gradient_test.cc, L = sum(G * out) with fixed random G, so dL/dout = G.
#include <cmath>
#include <functional>

#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

// Backends implement the transformer kernels one by one; a test skips, naming the
// kernel, on a backend that lacks one (its launch would be kUnimplemented).
class TransformerKernelTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    for (const char* name : {"embedding_forward", "embedding_backward", "layernorm_forward",
                             "layernorm_backward", "gelu", "gelu_backward", "add",
                             "attention_forward", "attention_backward"}) {
      if (device_->find_kernel(name) == nullptr) {
        GTEST_SKIP() << device_->name() << " (" << GetParam().name << ") has no '" << name
                     << "' kernel yet";
      }
    }
  }
};


TEST_P(TransformerKernelTest, EmbeddingAddsTokenAndPositionRowsAndScattersGradients) {
  const int64_t b = 2, t = 3, c = 4, vocab = 5, positions = 4;
  Tensor tokens = make({b, t}, DType::kI32);
  const std::vector<int32_t> tok = {1, 4, 1, 0, 2, 1};  // token 1 three times
  queue_->write(tokens, tok.data());
  const std::vector<float> wte_host = random_values(vocab * c, 1);
  const std::vector<float> wpe_host = random_values(positions * c, 2);
  Tensor wte = upload(wte_host, {vocab, c}), wpe = upload(wpe_host, {positions, c});
  Tensor out = make({b, t, c});
  kernels::embedding_forward(*queue_, tokens, wte, wpe, out);
  const std::vector<float> got = download(out);
  for (int64_t i = 0; i < b * t; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      EXPECT_FLOAT_EQ(got[i * c + j], wte_host[tok[i] * c + j] + wpe_host[(i % t) * c + j]);
    }
  }
  const std::vector<float> g_host = random_values(b * t * c, 3);
  auto loss = [&](const std::vector<float>& wte_v, const std::vector<float>& wpe_v) {
    set(wte, wte_v);
    set(wpe, wpe_v);
    kernels::embedding_forward(*queue_, tokens, wte, wpe, out);
    return weighted_sum(g_host, download(out));
  };
  auto num_wte = numeric_gradient(wte_host, [&](auto& v) { return loss(v, wpe_host); }, 0.25f);
  auto num_wpe = numeric_gradient(wpe_host, [&](auto& v) { return loss(wte_host, v); }, 0.25f);
  // beta_wte = 1 adds onto what dwte held (a tied LM head's gradient); beta_wpe = 0 ignores.
  const std::vector<float> prior = random_values(vocab * c, 4);
  Tensor dwte = upload(prior, {vocab, c});
  Tensor dwpe = upload(random_values(positions * c, 5), {positions, c});
  kernels::embedding_backward(*queue_, upload(g_host, {b, t, c}), tokens, dwte, dwpe, 1.0f, 0.0f);
  for (size_t i = 0; i < num_wte.size(); ++i) num_wte[i] += prior[i];
  expect_close(download(dwte), num_wte, 1e-4, 1e-4, "dwte");
  expect_close(download(dwpe), num_wpe, 1e-4, 1e-4, "dwpe");
}

TEST_P(TransformerKernelTest, EmbeddingRejectsATokenOutsideTheVocabulary) {
  Tensor tokens = make({1, 2}, DType::kI32);
  const std::vector<int32_t> tok = {0, 7};
  queue_->write(tokens, tok.data());
  Tensor wte = make({5, 2}), wpe = make({2, 2}), out = make({1, 2, 2});
  kernels::fill(*queue_, wte, 0.0f);
  kernels::fill(*queue_, wpe, 0.0f);
  expect_error(
      [&] {
        kernels::embedding_forward(*queue_, tokens, wte, wpe, out);
        queue_->synchronize();
      },
      ErrorKind::kInvalidArgument, {"token 7", "(0, 1)", "[0, 5)"});
}

TEST_P(TransformerKernelTest, LayerNormNormalizesRowsAndMatchesFiniteDifferences) {
  const int64_t rows = 3, c = 8;
  const std::vector<float> x_host = random_values(rows * c, 6, -2.0f, 2.0f);
  const std::vector<float> w_host = random_values(c, 7, 0.5f, 1.5f);
  const std::vector<float> b_host = random_values(c, 8);
  const std::vector<float> g_host = random_values(rows * c, 9);
  Tensor x = upload(x_host, {rows, c}), w = upload(w_host, {c}), bias = upload(b_host, {c});
  Tensor y = make({rows, c}), mean = make({rows}), rstd = make({rows});
  const float eps = 1e-5f;
  // With weight 1 and bias 0 every row has mean 0 and variance 1 (up to eps).
  kernels::layernorm_forward(*queue_, x, upload(std::vector<float>(c, 1.0f), {c}),
                             upload(std::vector<float>(c, 0.0f), {c}), y, mean, rstd, eps);
  const std::vector<float> plain = download(y);
  for (int64_t i = 0; i < rows; ++i) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < c; ++j) m += plain[i * c + j] / c;
    for (int64_t j = 0; j < c; ++j) v += (plain[i * c + j] - m) * (plain[i * c + j] - m) / c;
    EXPECT_NEAR(m, 0.0, 1e-6);
    EXPECT_NEAR(v, 1.0, 1e-3);
  }
  auto loss = [&](const std::vector<float>& x_v, const std::vector<float>& w_v,
                  const std::vector<float>& b_v) {
    set(x, x_v);
    set(w, w_v);
    set(bias, b_v);
    kernels::layernorm_forward(*queue_, x, w, bias, y, mean, rstd, eps);
    return weighted_sum(g_host, download(y));
  };
  const float h = 1e-2f;
  auto num_x = numeric_gradient(x_host, [&](auto& v) { return loss(v, w_host, b_host); }, h);
  auto num_w = numeric_gradient(w_host, [&](auto& v) { return loss(x_host, v, b_host); }, h);
  auto num_b = numeric_gradient(b_host, [&](auto& v) { return loss(x_host, w_host, v); }, h);
  loss(x_host, w_host, b_host);
  // dx_beta = 1 adds onto dX (a residual gradient); param_beta = 0 ignores old dweight.
  const std::vector<float> residual = random_values(rows * c, 10);
  Tensor dx = upload(residual, {rows, c});
  Tensor dw = upload(random_values(c, 11), {c}), db = upload(random_values(c, 12), {c});
  kernels::layernorm_backward(*queue_, upload(g_host, {rows, c}), x, w, mean, rstd, dx, dw, db,
                              1.0f, 0.0f);
  for (size_t i = 0; i < num_x.size(); ++i) num_x[i] += residual[i];
  expect_close(download(dx), num_x, 2e-3, 2e-3, "dX");
  expect_close(download(dw), num_w, 1e-3, 1e-3, "dweight");
  expect_close(download(db), num_b, 1e-3, 1e-3, "dbias");
}

TEST_P(TransformerKernelTest, GeluIsGpt2sTanhFormAndMatchesFiniteDifferences) {
  const int64_t count = 16;
  const std::vector<float> x_host = random_values(count, 13, -4.0f, 4.0f);
  Tensor x = upload(x_host, {count}), y = make({count});
  kernels::gelu(*queue_, x, y);
  const std::vector<float> got = download(y);
  for (int64_t i = 0; i < count; ++i) {
    const double v = x_host[i];
    const double want = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_NEAR(got[i], want, 1e-6) << "x = " << v;
  }
  const std::vector<float> g_host = random_values(count, 14);
  auto loss = [&](const std::vector<float>& x_v) {
    set(x, x_v);
    kernels::gelu(*queue_, x, y);
    return weighted_sum(g_host, download(y));
  };
  auto numeric = numeric_gradient(x_host, loss, 1e-2f);
  set(x, x_host);
  Tensor dx = upload(g_host, {count});
  kernels::gelu_backward(*queue_, x, dx, dx);  // in place on dY
  expect_close(download(dx), numeric, 1e-3, 1e-3, "dX");
}

TEST_P(TransformerKernelTest, AddSumsElementwiseInPlace) {
  const std::vector<float> a = random_values(10, 15), b = random_values(10, 16);
  Tensor x = upload(a, {2, 5}), y = upload(b, {2, 5});
  kernels::add(*queue_, x, y, x);
  const std::vector<float> got = download(x);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(got[i], a[i] + b[i]);
}

TEST_P(TransformerKernelTest, AttentionIsCausalAndMatchesFiniteDifferences) {
  const int64_t b = 2, t = 4, heads = 2, d = 3, c = heads * d;
  const std::vector<float> qkv_host = random_values(b * t * 3 * c, 17, -1.5f, 1.5f);
  const std::vector<float> g_host = random_values(b * t * c, 18);
  Tensor qkv = upload(qkv_host, {b, t, 3 * c}), out = make({b, t, c});
  Tensor probs = make({b, heads, t, t});
  kernels::attention_forward(*queue_, qkv, out, probs, heads);
  const std::vector<float> p = download(probs), o = download(out);
  for (int64_t bh = 0; bh < b * heads; ++bh) {
    for (int64_t i = 0; i < t; ++i) {
      double row = 0;
      for (int64_t j = 0; j < t; ++j) {
        const float pij = p[(bh * t + i) * t + j];
        if (j > i) {
          EXPECT_EQ(pij, 0.0f) << "future position " << j << " seen from " << i;
        }
        row += pij;
      }
      EXPECT_NEAR(row, 1.0, 1e-6);
    }
  }
  // Position 0 sees only itself: its output is its own value vector.
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t j = 0; j < c; ++j) {
      EXPECT_NEAR(o[bi * t * c + j], qkv_host[bi * t * 3 * c + 2 * c + j], 1e-6);
    }
  }
  auto loss = [&](const std::vector<float>& qkv_v) {
    set(qkv, qkv_v);
    kernels::attention_forward(*queue_, qkv, out, probs, heads);
    return weighted_sum(g_host, download(out));
  };
  auto numeric = numeric_gradient(qkv_host, loss, 1e-2f);
  set(qkv, qkv_host);
  kernels::attention_forward(*queue_, qkv, out, probs, heads);
  Tensor dqkv = make({b, t, 3 * c}), scratch = make({b, heads, t, t});
  kernels::attention_backward(*queue_, upload(g_host, {b, t, c}), qkv, probs, dqkv, scratch, heads);
  expect_close(download(dqkv), numeric, 1e-3, 2e-3, "dqkv");
}

TEST_P(TransformerKernelTest, AttentionRejectsChannelsThatHeadsDoNotDivide) {
  Tensor qkv = make({1, 2, 15}), out = make({1, 2, 5}), probs = make({1, 2, 2, 2});
  expect_error([&] { kernels::attention_forward(*queue_, qkv, out, probs, 2); },
               ErrorKind::kInvalidArgument, {"attention_forward", "multiple of heads (2)"});
}

PETARING_INSTANTIATE_DEVICE_SUITE(TransformerKernelTest);

}  // namespace
}  // namespace petaring::testing
