// Gradient checks: every backward computed by the kernels must match central finite
// differences of the forward kernels. Each check builds a scalar L = sum(G * out) with
// fixed random weights G, accumulated in double on the host, so dL/dout = G.
#include <cmath>
#include <functional>

#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

using KernelGradientTest = DeviceTest;


struct GemmCase {
  bool trans_a, trans_b;
};

// C = alpha op(A) op(B) + beta C0, L = sum(G * C). The backward is itself a gemm:
//   dA = alpha G op(B)^T (stored transposed when trans_a), dB likewise, dC0 = beta G.
TEST_P(KernelGradientTest, GemmMatchesFiniteDifferencesForAllTransposes) {
  const int64_t m = 4, n = 3, k = 5;
  const float alpha = 0.75f, beta = 0.5f;
  for (GemmCase tc : {GemmCase{false, false}, GemmCase{false, true}, GemmCase{true, false},
                      GemmCase{true, true}}) {
    SCOPED_TRACE(::testing::Message() << "trans_a " << tc.trans_a << " trans_b " << tc.trans_b);
    const Shape a_shape = tc.trans_a ? Shape{k, m} : Shape{m, k};
    const Shape b_shape = tc.trans_b ? Shape{n, k} : Shape{k, n};
    const std::vector<float> a_host = random_values(m * k, 1), b_host = random_values(k * n, 2);
    const std::vector<float> c0_host = random_values(m * n, 3), g_host = random_values(m * n, 4);
    Tensor a = upload(a_host, a_shape), b = upload(b_host, b_shape), c = make({m, n});
    Tensor g = upload(g_host, {m, n});

    auto loss = [&](const std::vector<float>& a_v, const std::vector<float>& b_v,
                    const std::vector<float>& c0_v) {
      set(a, a_v);
      set(b, b_v);
      set(c, c0_v);
      kernels::gemm(*queue_, tc.trans_a, tc.trans_b, alpha, a, b, beta, c);
      return weighted_sum(g_host, download(c));
    };
    // The loss is linear in each input, so a large step has no truncation error.
    const float h = 0.25f;
    auto num_a = numeric_gradient(a_host, [&](auto& v) { return loss(v, b_host, c0_host); }, h);
    auto num_b = numeric_gradient(b_host, [&](auto& v) { return loss(a_host, v, c0_host); }, h);
    auto num_c0 = numeric_gradient(c0_host, [&](auto& v) { return loss(a_host, b_host, v); }, h);

    set(a, a_host);
    set(b, b_host);
    Tensor da = make(a_shape), db = make(b_shape);
    if (tc.trans_a) kernels::gemm(*queue_, tc.trans_b, true, alpha, b, g, 0.0f, da);
    else kernels::gemm(*queue_, false, !tc.trans_b, alpha, g, b, 0.0f, da);
    if (tc.trans_b) kernels::gemm(*queue_, true, tc.trans_a, alpha, g, a, 0.0f, db);
    else kernels::gemm(*queue_, !tc.trans_a, false, alpha, a, g, 0.0f, db);
    expect_close(download(da), num_a, 1e-4, 1e-4, "dA");
    expect_close(download(db), num_b, 1e-4, 1e-4, "dB");
    std::vector<float> dc0(g_host.size());
    for (size_t i = 0; i < dc0.size(); ++i) dc0[i] = beta * g_host[i];
    expect_close(dc0, num_c0, 1e-4, 1e-4, "dC0");
  }
}

// Y = Y0 + bias (broadcast over rows); dL/dbias = bias_grad(G).
TEST_P(KernelGradientTest, BiasGradIsTheBackwardOfBiasAdd) {
  const int64_t rows = 5, cols = 7;
  const std::vector<float> y0 = random_values(rows * cols, 5), g_host = random_values(rows * cols, 6);
  const std::vector<float> bias_host = random_values(cols, 7);
  Tensor y = make({rows, cols}), bias = make({cols}), g = upload(g_host, {rows, cols});
  auto loss = [&](const std::vector<float>& bias_v) {
    set(y, y0);
    set(bias, bias_v);
    kernels::bias_add(*queue_, y, bias);
    return weighted_sum(g_host, download(y));
  };
  auto numeric = numeric_gradient(bias_host, loss, 0.25f);
  Tensor dbias = upload(random_values(cols, 8), {cols});  // beta = 0 must ignore it
  kernels::bias_grad(*queue_, g, dbias, 0.0f);
  expect_close(download(dbias), numeric, 1e-4, 1e-4, "dbias");
}

// Y = relu(X); dX = relu_backward(Y, G). X stays at least 0.1 away from the kink at 0.
TEST_P(KernelGradientTest, ReluBackwardMatchesFiniteDifferences) {
  const int64_t count = 24;
  std::vector<float> x_host = random_values(count, 9);
  for (float& v : x_host) v = v < 0 ? v - 0.1f : v + 0.1f;
  const std::vector<float> g_host = random_values(count, 10);
  Tensor x = make({4, 6}), y = make({4, 6}), g = upload(g_host, {4, 6});
  auto loss = [&](const std::vector<float>& x_v) {
    set(x, x_v);
    kernels::relu(*queue_, x, y);
    return weighted_sum(g_host, download(y));
  };
  auto numeric = numeric_gradient(x_host, loss, 0.05f);
  set(x, x_host);
  kernels::relu(*queue_, x, y);
  Tensor dx = make({4, 6});
  kernels::relu_backward(*queue_, y, g, dx);
  expect_close(download(dx), numeric, 1e-4, 1e-4, "dX");
}

// loss = mean_i -log softmax(logits)[i, label_i]; dlogits = backward(probs, labels, 1/B).
TEST_P(KernelGradientTest, SoftmaxXentBackwardMatchesFiniteDifferences) {
  const int64_t rows = 4, classes = 5;
  const std::vector<float> logits_host = random_values(rows * classes, 11, -3.0f, 3.0f);
  Tensor logits = make({rows, classes}), probs = make({rows, classes}), loss_t = make({1});
  Tensor labels = upload_labels({0, 4, 2, 2});
  auto loss = [&](const std::vector<float>& logits_v) {
    set(logits, logits_v);
    kernels::softmax_xent_forward(*queue_, logits, labels, probs, loss_t);
    return double(download(loss_t)[0]);
  };
  auto numeric = numeric_gradient(logits_host, loss, 1e-2f);
  set(logits, logits_host);
  kernels::softmax_xent_forward(*queue_, logits, labels, probs, loss_t);
  Tensor dlogits = make({rows, classes});
  kernels::softmax_xent_backward(*queue_, probs, labels, dlogits, 1.0f / rows);
  expect_close(download(dlogits), numeric, 2e-4, 2e-3, "dlogits");
}

PETARING_INSTANTIATE_DEVICE_SUITE(KernelGradientTest);

}  // namespace
}  // namespace petaring::testing
