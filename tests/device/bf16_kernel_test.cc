// The mixed-precision (bf16) kernels against f32 references: exact where the contract is
// exact (conversions; LayerNorm's rounding of its f32 result), and within bf16's
// precision (8 significant bits, relative step 2^-8) where products of rounded values
// are summed. Also the f32 causal attention at a length that spans several row blocks,
// against a double-precision reference.
#include <cmath>
#include <limits>

#include "runtime/dtype.h"
#include "tests/device/device_test_util.h"

namespace petaring::testing {
namespace {

constexpr const char* kBf16Kernels[] = {
    "convert",   "gemm_bf16",          "linear_bf16",           "layernorm_forward_bf16",
    "gelu_bf16", "gelu_backward_bf16", "attention_forward_bf16", "attention_backward_bf16"};

float round_bf16(float x) { return bf16_to_f32(bf16_from_f32(x)); }

std::vector<float> rounded(std::vector<float> values) {
  for (float& v : values) v = round_bf16(v);
  return values;
}

class Bf16KernelTest : public DeviceTest {
 protected:
  void SetUp() override {
    DeviceTest::SetUp();
    if (IsSkipped()) return;
    for (const char* name : kBf16Kernels) {
      if (device_->find_kernel(name) == nullptr) {
        GTEST_SKIP() << device_->name() << " (" << GetParam().name << ") has no '" << name
                     << "' kernel yet";
      }
    }
  }

  Tensor upload_bf16(const std::vector<float>& values, Shape shape) {
    std::vector<BF16> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i) bits[i] = bf16_from_f32(values[i]);
    Tensor t = make(shape, DType::kBF16);
    queue_->write(t, bits.data());
    queue_->synchronize();
    return t;
  }
  std::vector<float> download_bf16(const Tensor& t) {
    std::vector<BF16> bits(static_cast<size_t>(t.numel()));
    queue_->read(bits.data(), t);
    queue_->synchronize();
    std::vector<float> out(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_to_f32(bits[i]);
    return out;
  }
};

// Per element |got - want| <= atol + rtol * |want|.
void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, double atol,
                     double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], atol + rtol * std::fabs(want[i])) << what << " element " << i;
  }
}

// C = alpha op(A) op(B) + beta C in double, row-major, A (rows_a, cols_a).
std::vector<float> reference_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                                  const std::vector<float>& a, const std::vector<float>& b,
                                  float beta, std::vector<float> c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        sum += double(ta ? a[p * m + i] : a[i * k + p]) * double(tb ? b[j * k + p] : b[p * n + j]);
      }
      c[i * n + j] = static_cast<float>(alpha * sum + beta * double(c[i * n + j]));
    }
  }
  return c;
}

// Causal attention in double: out (B, T, C) and probs (B, H, T, T) from qkv (B, T, 3C).
void reference_attention(const std::vector<float>& qkv, int64_t b, int64_t t, int64_t heads,
                         int64_t c, std::vector<float>* out, std::vector<float>* probs) {
  const int64_t d = c / heads;
  out->assign(static_cast<size_t>(b * t * c), 0.0f);
  probs->assign(static_cast<size_t>(b * heads * t * t), 0.0f);
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < t; ++i) {
        std::vector<double> s(static_cast<size_t>(i + 1));
        double max = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) {
            dot += double(qkv[(bi * t + i) * 3 * c + h * d + e]) *
                   double(qkv[(bi * t + j) * 3 * c + c + h * d + e]);
          }
          s[j] = dot / std::sqrt(double(d));
          max = std::max(max, s[j]);
        }
        for (int64_t j = 0; j <= i; ++j) sum += (s[j] = std::exp(s[j] - max));
        for (int64_t j = 0; j <= i; ++j) {
          (*probs)[((bi * heads + h) * t + i) * t + j] = static_cast<float>(s[j] / sum);
          for (int64_t e = 0; e < d; ++e) {
            (*out)[(bi * t + i) * c + h * d + e] +=
                static_cast<float>(s[j] / sum * double(qkv[(bi * t + j) * 3 * c + 2 * c + h * d + e]));
          }
        }
      }
    }
  }
}

TEST_P(Bf16KernelTest, ConvertRoundsToNearestEvenAndWidensExactly) {
  std::vector<float> values = random_values(1000, 31, -3.0f, 3.0f);
  const float kInf = std::numeric_limits<float>::infinity();
  for (float special : {0.0f, -0.0f, 1.0f + 0x1p-8f /* tie: down to 1 */,
                        1.0f + 3 * 0x1p-8f /* tie: up to even */, 1e-40f /* subnormal */, kInf,
                        -kInf, 3.4e38f /* rounds to infinity */}) {
    values.push_back(special);
  }
  Tensor x = upload(values, {static_cast<int64_t>(values.size())});
  Tensor y = make(x.shape, DType::kBF16);
  kernels::convert(*queue_, x, y);
  std::vector<BF16> bits(values.size());
  queue_->read(bits.data(), y);
  queue_->synchronize();
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(bits[i].bits, bf16_from_f32(values[i]).bits) << "value " << values[i];
  }
  EXPECT_EQ(bf16_to_f32(bits[values.size() - 6]), 1.0f);
  EXPECT_EQ(bf16_to_f32(bits[values.size() - 5]), 1.0f + 0x1p-6f);
  Tensor back = make(x.shape);
  kernels::convert(*queue_, y, back);
  const std::vector<float> widened = download(back);
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(widened[i], bf16_to_f32(bits[i]));
  // NaN stays NaN both ways.
  Tensor nan = upload({std::numeric_limits<float>::quiet_NaN()}, {1});
  Tensor nan16 = make({1}, DType::kBF16), nan32 = make({1});
  kernels::convert(*queue_, nan, nan16);
  kernels::convert(*queue_, nan16, nan32);
  EXPECT_TRUE(std::isnan(download(nan32)[0]));
}

TEST_P(Bf16KernelTest, GemmSumsRoundedInputsInF32ForEveryTranspose) {
  const int64_t m = 37, n = 29, k = 67;
  for (int trans = 0; trans < 4; ++trans) {
    const bool ta = trans & 1, tb = trans & 2;
    const std::vector<float> a = random_values(m * k, 40 + trans), b = random_values(k * n, 50 + trans);
    const std::vector<float> c0 = random_values(m * n, 60 + trans);
    Tensor ta_t = upload_bf16(a, ta ? Shape{k, m} : Shape{m, k});
    Tensor tb_t = upload_bf16(b, tb ? Shape{n, k} : Shape{k, n});
    Tensor c = upload(c0, {m, n});
    kernels::gemm_bf16(*queue_, ta, tb, 0.5f, ta_t, tb_t, 1.0f, c);
    const std::vector<float> got = download(c);
    // Against the exact product of the rounded inputs: only f32 summation error.
    expect_near_all(got, reference_gemm(ta, tb, m, n, k, 0.5f, rounded(a), rounded(b), 1.0f, c0),
                    1e-5, 1e-5, "gemm_bf16 vs rounded inputs, trans " + std::to_string(trans));
    // Against f32 inputs: within bf16's rounding of K products (|sum| up to ~sqrt(K)).
    expect_near_all(got, reference_gemm(ta, tb, m, n, k, 0.5f, a, b, 1.0f, c0), 5e-2, 1e-2,
                    "gemm_bf16 vs f32, trans " + std::to_string(trans));
  }
}

TEST_P(Bf16KernelTest, LinearAddsTheF32BiasAndRoundsOnce) {
  const int64_t rows = 45, in = 40, out = 24;
  const std::vector<float> x = random_values(rows * in, 70), w = random_values(out * in, 71);
  const std::vector<float> bias = random_values(out, 72);
  Tensor x16 = upload_bf16(x, {rows, in}), w16 = upload_bf16(w, {out, in});
  Tensor bias32 = upload(bias, {out});
  std::vector<float> want = reference_gemm(false, true, rows, out, in, 1.0f, rounded(x), rounded(w),
                                           0.0f, std::vector<float>(rows * out, 0.0f));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < out; ++j) want[i * out + j] += bias[j];
  }
  Tensor y32 = make({rows, out});
  kernels::linear_bf16(*queue_, x16, w16, bias32, y32);
  expect_near_all(download(y32), want, 1e-5, 1e-5, "linear_bf16 into f32");
  Tensor y16 = make({rows, out}, DType::kBF16);
  kernels::linear_bf16(*queue_, x16, w16, bias32, y16);
  const std::vector<float> got16 = download_bf16(y16);
  // One rounding of the f32 result: half a bf16 step, at most 2^-8 relative.
  expect_near_all(got16, want, 1e-6, 0x1p-8 * 1.01, "linear_bf16 into bf16");
}

TEST_P(Bf16KernelTest, LayerNormKeepsF32StatisticsAndRoundsItsOutput) {
  const int64_t rows = 9, c = 48;
  const std::vector<float> x = random_values(rows * c, 80, -2.0f, 3.0f);
  Tensor xt = upload(x, {rows, c});
  Tensor w = upload(random_values(c, 81, 0.5f, 1.5f), {c}), b = upload(random_values(c, 82), {c});
  Tensor y32 = make({rows, c}), y16 = make({rows, c}, DType::kBF16);
  Tensor mean32 = make({rows}), rstd32 = make({rows}), mean16 = make({rows}), rstd16 = make({rows});
  kernels::layernorm_forward(*queue_, xt, w, b, y32, mean32, rstd32, 1e-5f);
  kernels::layernorm_forward_bf16(*queue_, xt, w, b, y16, mean16, rstd16, 1e-5f);
  EXPECT_EQ(download(mean16), download(mean32));
  EXPECT_EQ(download(rstd16), download(rstd32));
  expect_near_all(download_bf16(y16), download(y32), 1e-7, 0x1p-8 * 1.01, "layernorm Y");
}

TEST_P(Bf16KernelTest, GeluMatchesF32WithinBf16Rounding) {
  const int64_t count = 3000;
  const std::vector<float> x = rounded(random_values(count, 90, -5.0f, 5.0f));
  const std::vector<float> dy = random_values(count, 91);
  Tensor x32 = upload(x, {count}), x16 = upload_bf16(x, {count});
  Tensor y32 = make({count}), y16 = make({count}, DType::kBF16);
  kernels::gelu(*queue_, x32, y32);
  kernels::gelu_bf16(*queue_, x16, y16);
  // The same input (exactly representable): the bf16 result is the f32 one rounded.
  expect_near_all(download_bf16(y16), download(y32), 1e-7, 0x1p-8 * 1.01, "gelu");
  Tensor dx32 = make({count}), dx16 = make({count});
  kernels::gelu_backward(*queue_, x32, upload(dy, {count}), dx32);
  kernels::gelu_backward_bf16(*queue_, x16, upload(dy, {count}), dx16);
  expect_near_all(download(dx16), download(dx32), 0.0, 1e-6, "gelu_backward");
}

// T = 70 spans three 32-row blocks of the causal attention, the last one partial.
TEST_P(Bf16KernelTest, AttentionOverSeveralRowBlocksMatchesDoubleAndF32References) {
  const int64_t b = 2, t = 70, heads = 2, d = 8, c = heads * d;
  const std::vector<float> qkv = random_values(b * t * 3 * c, 100, -1.5f, 1.5f);
  const std::vector<float> g = random_values(b * t * c, 101);
  std::vector<float> ref_out, ref_probs;
  reference_attention(qkv, b, t, heads, c, &ref_out, &ref_probs);

  Tensor qkv32 = upload(qkv, {b, t, 3 * c}), out32 = make({b, t, c});
  Tensor probs32 = make({b, heads, t, t});
  kernels::attention_forward(*queue_, qkv32, out32, probs32, heads);
  expect_near_all(download(probs32), ref_probs, 1e-6, 1e-5, "f32 probs");
  expect_near_all(download(out32), ref_out, 1e-5, 1e-5, "f32 out");

  Tensor qkv16 = upload_bf16(qkv, {b, t, 3 * c}), out16 = make({b, t, c}, DType::kBF16);
  Tensor probs16 = make({b, heads, t, t}, DType::kBF16);
  kernels::attention_forward_bf16(*queue_, qkv16, out16, probs16, heads);
  expect_near_all(download_bf16(probs16), ref_probs, 2e-3, 2e-2, "bf16 probs");
  expect_near_all(download_bf16(out16), ref_out, 1e-2, 2e-2, "bf16 out");

  // Backward: f32 against finite differences of the f32 forward would be slow at this
  // size; the f32 backward is checked that way in transformer_kernel_test.cc at T = 4 and
  // here against the bf16 one, which shares nothing with it but the head-level core.
  Tensor dout = upload(g, {b, t, c});
  Tensor dqkv32 = make({b, t, 3 * c}), dqkv16 = make({b, t, 3 * c});
  Tensor scratch = make({b, heads, t, t});
  kernels::attention_backward(*queue_, dout, qkv32, probs32, dqkv32, scratch, heads);
  kernels::attention_backward_bf16(*queue_, dout, qkv16, probs16, dqkv16, scratch, heads);
  const std::vector<float> want = download(dqkv32);
  double norm = 0, diff = 0;
  const std::vector<float> got = download(dqkv16);
  for (size_t i = 0; i < want.size(); ++i) {
    norm += double(want[i]) * want[i];
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
  }
  EXPECT_GT(norm, 1.0);
  EXPECT_LT(std::sqrt(diff / norm), 2e-2) << "relative L2 error of the bf16 dqkv";
}

// The f32 attention backward at T = 70 (three row blocks) against finite differences of
// the double reference forward, on a few coordinates spread over the blocks.
TEST_P(Bf16KernelTest, F32AttentionBackwardOverSeveralRowBlocksMatchesFiniteDifferences) {
  const int64_t b = 1, t = 70, heads = 1, d = 4, c = heads * d;
  const std::vector<float> qkv = random_values(b * t * 3 * c, 110, -1.0f, 1.0f);
  const std::vector<float> g = random_values(b * t * c, 111);
  Tensor qkv32 = upload(qkv, {b, t, 3 * c}), out = make({b, t, c});
  Tensor probs = make({b, heads, t, t}), dqkv = make({b, t, 3 * c});
  Tensor scratch = make({b, heads, t, t});
  kernels::attention_forward(*queue_, qkv32, out, probs, heads);
  kernels::attention_backward(*queue_, upload(g, {b, t, c}), qkv32, probs, dqkv, scratch, heads);
  const std::vector<float> analytic = download(dqkv);
  auto loss = [&](const std::vector<float>& v) {
    std::vector<float> o, p;
    reference_attention(v, b, t, heads, c, &o, &p);
    return weighted_sum(g, o);
  };
  for (int64_t row : {int64_t{0}, int64_t{5}, int64_t{31}, int64_t{32}, int64_t{40}, int64_t{63}, int64_t{64}, int64_t{69}}) {
    for (int64_t col : {int64_t{0}, c + 1, 2 * c + 3}) {  // a q, a k and a v column
      std::vector<float> v = qkv;
      const size_t at = static_cast<size_t>(row * 3 * c + col);
      const float h = 1e-2f;
      v[at] = qkv[at] + h;
      const double plus = loss(v);
      v[at] = qkv[at] - h;
      const double minus = loss(v);
      EXPECT_NEAR(analytic[at], (plus - minus) / (2 * h), 2e-3)
          << "dqkv row " << row << " column " << col;
    }
  }
}

TEST_P(Bf16KernelTest, LaunchersRejectWrongDtypes) {
  Tensor a32 = make({2, 3}), b16 = make({3, 2}, DType::kBF16), c32 = make({2, 2});
  expect_error([&] { kernels::gemm_bf16(*queue_, false, false, 1.0f, a32, b16, 0.0f, c32); },
               ErrorKind::kInvalidArgument, {"gemm_bf16", "A", "must be bf16", "got f32"});
  Tensor x16 = make({2, 4}, DType::kBF16), y32 = make({2, 4});
  expect_error([&] { kernels::gelu_bf16(*queue_, x16, y32); }, ErrorKind::kInvalidArgument,
               {"gelu_bf16", "Y", "must be bf16"});
  Tensor i32 = make({4}, DType::kI32), f32 = make({4});
  expect_error([&] { kernels::convert(*queue_, i32, f32); }, ErrorKind::kInvalidArgument,
               {"convert", "must be f32 or bf16", "i32"});
}

PETARING_INSTANTIATE_DEVICE_SUITE(Bf16KernelTest);


}  // namespace
}  // namespace petaring::testing
