// The GPU kernels' source (device/amd/gpu/kernels.cl) compiled for the host and run
// through its kernarg structs (host_kernels.h), checked against the cpu backend's
// kernels on the same inputs. This tests the arithmetic and indexing of the GPU code,
// not the GPU: nothing here runs on one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "device/amd/gpu/host_kernels.h"
#include "device/amd/gpu/kernargs.h"
#include "device/cpu/cpu_device.h"
#include "device/kernels.h"
#include "runtime/error.h"
#include "tests/device/device_test_util.h"

namespace petaring::amd::gpu {
namespace {

using ::petaring::testing::random_values;

uint64_t address(const void* p) { return reinterpret_cast<uint64_t>(p); }

std::array<uint32_t, 3> groups_1d(size_t work_items) {
  return {static_cast<uint32_t>((work_items + PR_BLOCK - 1) / PR_BLOCK), 1, 1};
}
constexpr std::array<uint32_t, 3> kBlock = {PR_BLOCK, 1, 1};

template <typename Args>
void run(const char* name, const Args& args, std::array<uint32_t, 3> groups,
         std::array<uint32_t, 3> workgroup = kBlock) {
  run_host_kernel(name, &args, sizeof args, groups, workgroup);
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want,
                     float tolerance, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tolerance * (1.0f + std::fabs(want[i])))
        << what << " element " << i;
  }
}

// The cpu backend as the reference: tensors in, results back.
class GpuSourceOnHost : public ::testing::Test {
 protected:
  void SetUp() override {
    CpuDeviceOptions options;
    options.count = 1;
    options.memory_bytes = 64ull << 20;
    options.threads = 1;
    device_ = std::move(open_cpu_devices(options).front());
    queue_ = device_->create_queue(QueueKind::kCompute);
  }
  Tensor upload(const std::vector<float>& values, Shape shape) {
    buffers_.push_back(device_->allocate(values.size() * sizeof(float)));
    Tensor t(buffers_.back().get(), 0, shape, DType::kF32);
    queue_->write(t, values.data());
    queue_->synchronize();  // the host kernels then change `values` in place
    return t;
  }
  Tensor upload_labels(const std::vector<int32_t>& labels) {
    buffers_.push_back(device_->allocate(labels.size() * sizeof(int32_t)));
    Tensor t(buffers_.back().get(), 0, Shape{int64_t(labels.size())}, DType::kI32);
    queue_->write(t, labels.data());
    queue_->synchronize();
    return t;
  }
  std::vector<float> download(const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    queue_->read(out.data(), t);
    queue_->synchronize();
    return out;
  }

  std::unique_ptr<Device> device_;
  std::unique_ptr<Queue> queue_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

TEST_F(GpuSourceOnHost, GemmEveryTransposeAndBeta) {
  const uint32_t m = 19, n = 23, k = 37;  // not multiples of the 16x16 tile
  for (int trans = 0; trans < 4; ++trans) {
    const bool ta = trans & 1, tb = trans & 2;
    for (float beta : {0.0f, 0.3f}) {
      SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb << " beta " << beta);
      std::vector<float> a = random_values(m * k, 1 + trans), b = random_values(k * n, 7 + trans);
      std::vector<float> c = random_values(m * n, 11);
      if (beta == 0.0f) c.assign(m * n, std::numeric_limits<float>::quiet_NaN());
      Tensor ta_t = upload(a, ta ? Shape{k, m} : Shape{m, k});
      Tensor tb_t = upload(b, tb ? Shape{n, k} : Shape{k, n});
      Tensor tc_t = upload(c, Shape{m, n});
      kernels::gemm(*queue_, ta, tb, 0.7f, ta_t, tb_t, beta, tc_t);
      const std::vector<float> want = download(tc_t);

      PrGemmArgs args{address(a.data()), address(b.data()), address(c.data()), m, n, k,
                      uint32_t(ta), uint32_t(tb), 0.7f, beta};
      run("gemm", args, {(n + PR_GEMM_TILE - 1) / PR_GEMM_TILE, (m + PR_GEMM_TILE - 1) / PR_GEMM_TILE, 1},
          {PR_GEMM_TILE, PR_GEMM_TILE, 1});
      expect_near_all(c, want, 1e-5f, "C");
    }
  }
}

TEST_F(GpuSourceOnHost, BiasAddAndBiasGrad) {
  const uint32_t rows = 33, cols = 300;  // cols > PR_BLOCK: two workgroups for bias_grad
  std::vector<float> y = random_values(rows * cols, 3), bias = random_values(cols, 4);
  Tensor ty = upload(y, Shape{rows, cols}), tbias = upload(bias, Shape{cols});
  kernels::bias_add(*queue_, ty, tbias);
  run("bias_add", PrBiasAddArgs{address(y.data()), address(bias.data()), rows, cols},
      groups_1d(rows * cols));
  expect_near_all(y, download(ty), 0.0f, "Y");

  for (float beta : {0.0f, 0.5f}) {
    std::vector<float> dbias = random_values(cols, 5);
    if (beta == 0.0f) dbias.assign(cols, std::numeric_limits<float>::quiet_NaN());
    Tensor tdbias = upload(dbias, Shape{cols});
    kernels::bias_grad(*queue_, ty, tdbias, beta);
    run("bias_grad", PrBiasGradArgs{address(y.data()), address(dbias.data()), rows, cols, beta},
        groups_1d(cols));
    expect_near_all(dbias, download(tdbias), 1e-6f, "dbias");
  }
}

TEST_F(GpuSourceOnHost, ReluAndBackward) {
  const uint32_t count = 1000;
  std::vector<float> x = random_values(count, 8), y(count), dy = random_values(count, 9),
                     dx(count);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  Tensor tx = upload(x, Shape{count}), tyy = upload(y, Shape{count});
  kernels::relu(*queue_, tx, tyy);
  run("relu", PrReluArgs{address(x.data()), address(y.data()), count}, groups_1d(count));
  std::vector<float> want = download(tyy);
  EXPECT_TRUE(std::isnan(y[5]) && std::isnan(want[5]));
  y[5] = want[5] = 0;
  expect_near_all(y, want, 0.0f, "Y");

  Tensor tdy = upload(dy, Shape{count}), tdx = upload(dx, Shape{count});
  kernels::relu_backward(*queue_, tyy, tdy, tdx);
  y[5] = std::numeric_limits<float>::quiet_NaN();  // as the device holds it
  run("relu_backward", PrReluBackwardArgs{address(y.data()), address(dy.data()), address(dx.data()), count},
      groups_1d(count));
  expect_near_all(dx, download(tdx), 0.0f, "dX");
}

TEST_F(GpuSourceOnHost, SoftmaxCrossEntropyForwardAndBackward) {
  const uint32_t rows = 300, cols = 10;  // rows > PR_BLOCK: some work-items take two rows
  std::vector<float> logits = random_values(rows * cols, 12, -4.0f, 4.0f);
  std::vector<int32_t> labels(rows);
  for (uint32_t i = 0; i < rows; ++i) labels[i] = static_cast<int32_t>((i * 7) % cols);
  std::vector<float> probs(rows * cols), loss(1), dlogits(rows * cols);
  Tensor tl = upload(logits, Shape{rows, cols}), tlab = upload_labels(labels);
  Tensor tp = upload(probs, Shape{rows, cols}), tloss = upload(loss, Shape{1});
  kernels::softmax_xent_forward(*queue_, tl, tlab, tp, tloss);
  uint64_t status = 0;
  PrSoftmaxXentForwardArgs forward{address(logits.data()), address(labels.data()),
                                   address(probs.data()), address(loss.data()),
                                   address(&status), rows, cols};
  run("softmax_xent_forward", forward, {1, 1, 1});
  EXPECT_EQ(status, 0u);
  expect_near_all(probs, download(tp), 1e-6f, "probs");
  expect_near_all(loss, download(tloss), 1e-6f, "loss");

  Tensor td = upload(dlogits, Shape{rows, cols});
  kernels::softmax_xent_backward(*queue_, tp, tlab, td, 1.0f / rows);
  PrSoftmaxXentBackwardArgs backward{address(probs.data()), address(labels.data()),
                                     address(dlogits.data()), address(&status), rows, cols,
                                     1.0f / rows};
  run("softmax_xent_backward", backward, groups_1d(rows * cols));
  EXPECT_EQ(status, 0u);
  expect_near_all(dlogits, download(td), 1e-6f, "dlogits");

  // A label out of range is reported through the status word: label << 32 | row + 1.
  labels[17] = 12;
  run("softmax_xent_forward", forward, {1, 1, 1});
  EXPECT_EQ(status, uint64_t(12) << 32 | 18);
  status = 0;
  labels[17] = -1;
  run("softmax_xent_backward", backward, groups_1d(rows * cols));
  EXPECT_EQ(status, uint64_t(0xffffffffu) << 32 | 18);
}

TEST_F(GpuSourceOnHost, OptimizersMatchTheCpuBackend) {
  const uint32_t count = 777;
  for (bool nesterov : {false, true}) {
    for (float decay : {0.0f, 0.01f}) {
      std::vector<float> p = random_values(count, 20), g = random_values(count, 21),
                         v = random_values(count, 22);
      Tensor tp = upload(p, Shape{count}), tg = upload(g, Shape{count}), tv = upload(v, Shape{count});
      kernels::sgd_momentum(*queue_, tp, tg, tv, 0.1f, 0.9f, decay, nesterov);
      run("sgd_momentum",
          PrSgdMomentumArgs{address(p.data()), address(g.data()), address(v.data()), count, 0.1f,
                            0.9f, decay, uint32_t(nesterov)},
          groups_1d(count));
      expect_near_all(p, download(tp), 1e-7f, "sgd param");
      expect_near_all(v, download(tv), 1e-7f, "sgd velocity");
    }
  }
  std::vector<float> p = random_values(count, 30), g = random_values(count, 31),
                     m = random_values(count, 32), v = random_values(count, 33, 0.0f, 1.0f);
  Tensor tp = upload(p, Shape{count}), tg = upload(g, Shape{count}), tm = upload(m, Shape{count}),
         tv = upload(v, Shape{count});
  kernels::adamw(*queue_, tp, tg, tm, tv, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3);
  run("adamw",
      pr_make_adamw_args(address(p.data()), address(g.data()), address(m.data()),
                         address(v.data()), count, double(1e-3f), double(0.9f), double(0.999f),
                         double(1e-8f), double(0.01f), 3),
      groups_1d(count));
  expect_near_all(p, download(tp), 1e-7f, "adamw param");
  expect_near_all(m, download(tm), 1e-7f, "adamw m");
  expect_near_all(v, download(tv), 1e-7f, "adamw v");
}

TEST_F(GpuSourceOnHost, SumSquaresFillCopyScale) {
  const uint32_t count = 1001;
  std::vector<float> x = random_values(count, 40), out(1);
  Tensor tx = upload(x, Shape{count}), tout = upload(out, Shape{1});
  kernels::sum_squares(*queue_, tx, tout);
  run("sum_squares", PrSumSquaresArgs{address(x.data()), address(out.data()), count}, {1, 1, 1});
  EXPECT_FLOAT_EQ(out[0], download(tout)[0]);

  std::vector<float> filled(count);
  run("fill", PrFillArgs{address(filled.data()), count, 2.5f}, groups_1d(count));
  expect_near_all(filled, std::vector<float>(count, 2.5f), 0.0f, "fill");

  std::vector<unsigned char> from(13), to(16, 0xee);
  for (size_t i = 0; i < from.size(); ++i) from[i] = static_cast<unsigned char>(i + 1);
  run("copy", PrCopyArgs{address(from.data()), address(to.data()), 13}, groups_1d(4));
  EXPECT_EQ(std::memcmp(from.data(), to.data(), 13), 0);
  EXPECT_EQ(to[13], 0xee);  // nothing past `bytes`

  std::vector<float> scaled = x;
  kernels::scale(*queue_, tx, -0.5f);
  run("scale", PrScaleArgs{address(scaled.data()), count, -0.5f}, groups_1d(count));
  expect_near_all(scaled, download(tx), 0.0f, "scale");
}

// Sizes whose grids span several workgroups, so that the index arithmetic of every
// work-item is exercised, against the cpu backend's transformer kernels.
TEST_F(GpuSourceOnHost, EmbeddingBackwardSumsEachTokensRowsInOrder) {
  const uint32_t b = 3, t = 7, c = 20, vocab = 17, positions = 9;
  std::vector<int32_t> tokens(b * t);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 5 % 6);  // repeats
  std::vector<float> dout = random_values(b * t * c, 21);
  for (float beta : {0.0f, 1.0f}) {
    std::vector<float> dwte = random_values(vocab * c, 22), dwpe(positions * c);
    dwpe.assign(dwpe.size(), std::numeric_limits<float>::quiet_NaN());  // beta_wpe 0 ignores it
    Tensor tdout = upload(dout, Shape{b, t, c});
    buffers_.push_back(device_->allocate(tokens.size() * 4));
    Tensor ttok(buffers_.back().get(), 0, Shape{b, t}, DType::kI32);
    queue_->write(ttok, tokens.data());
    Tensor tdwte = upload(dwte, Shape{vocab, c}), tdwpe = upload(dwpe, Shape{positions, c});
    kernels::embedding_backward(*queue_, tdout, ttok, tdwte, tdwpe, beta, 0.0f);
    PrEmbeddingBackwardArgs args{address(dout.data()), address(tokens.data()), address(dwte.data()),
                                 address(dwpe.data()), 0, b * t, t, c, vocab, positions, beta,
                                 0.0f, 0};
    run("embedding_backward", args, groups_1d((vocab + positions) * c));
    expect_near_all(dwte, download(tdwte), 1e-6f, "dwte");
    expect_near_all(dwpe, download(tdwpe), 1e-6f, "dwpe");
  }
}

TEST_F(GpuSourceOnHost, LayerNormForwardAndBackward) {
  const uint32_t rows = 300, c = 24;  // rows + cols > PR_BLOCK
  std::vector<float> x = random_values(rows * c, 23, -2.0f, 2.0f), w = random_values(c, 24);
  std::vector<float> bias = random_values(c, 25), y(rows * c), mean(rows), rstd(rows);
  Tensor tx = upload(x, Shape{rows, c}), tw = upload(w, Shape{c}), tb = upload(bias, Shape{c});
  Tensor ty = upload(y, Shape{rows, c}), tm = upload(mean, Shape{rows}), tr = upload(rstd, Shape{rows});
  kernels::layernorm_forward(*queue_, tx, tw, tb, ty, tm, tr, 1e-5f);
  run("layernorm_forward",
      PrLayernormForwardArgs{address(x.data()), address(w.data()), address(bias.data()),
                             address(y.data()), address(mean.data()), address(rstd.data()), rows,
                             c, 1e-5f, 0},
      groups_1d(rows));
  expect_near_all(y, download(ty), 1e-5f, "Y");
  expect_near_all(rstd, download(tr), 1e-5f, "rstd");
  std::vector<float> dy = random_values(rows * c, 26), dx = random_values(rows * c, 27);
  std::vector<float> dw = random_values(c, 28), db = random_values(c, 29);
  Tensor tdy = upload(dy, Shape{rows, c}), tdx = upload(dx, Shape{rows, c});
  Tensor tdw = upload(dw, Shape{c}), tdb = upload(db, Shape{c});
  kernels::layernorm_backward(*queue_, tdy, tx, tw, tm, tr, tdx, tdw, tdb, 1.0f, 0.5f);
  run("layernorm_backward",
      PrLayernormBackwardArgs{address(dy.data()), address(x.data()), address(w.data()),
                              address(mean.data()), address(rstd.data()), address(dx.data()),
                              address(dw.data()), address(db.data()), rows, c, 1.0f, 0.5f},
      groups_1d(rows + c));
  expect_near_all(dx, download(tdx), 1e-4f, "dX");
  expect_near_all(dw, download(tdw), 1e-4f, "dweight");
  expect_near_all(db, download(tdb), 1e-4f, "dbias");
}

TEST_F(GpuSourceOnHost, AttentionForwardAndBothBackwardDispatches) {
  const uint32_t b = 2, t = 33, heads = 4, d = 6, c = heads * d;  // b * heads * t > PR_BLOCK
  std::vector<float> qkv = random_values(b * t * 3 * c, 30, -1.0f, 1.0f), out(b * t * c);
  std::vector<float> probs(b * heads * t * t);
  Tensor tqkv = upload(qkv, Shape{b, t, 3 * c}), tout = upload(out, Shape{b, t, c});
  Tensor tprobs = upload(probs, Shape{b, heads, t, t});
  kernels::attention_forward(*queue_, tqkv, tout, tprobs, heads);
  run("attention_forward",
      PrAttentionForwardArgs{address(qkv.data()), address(out.data()), address(probs.data()), b,
                             t, c, heads},
      groups_1d(b * heads * t));
  expect_near_all(probs, download(tprobs), 1e-5f, "probs");
  expect_near_all(out, download(tout), 1e-5f, "out");
  std::vector<float> dout = random_values(b * t * c, 31), dqkv(qkv.size(), 7.0f);
  std::vector<float> scratch(probs.size(), 7.0f);
  Tensor tdout = upload(dout, Shape{b, t, c}), tdqkv = upload(dqkv, Shape{b, t, 3 * c});
  Tensor tscratch = upload(scratch, Shape{b, heads, t, t});
  kernels::attention_backward(*queue_, tdout, tqkv, tprobs, tdqkv, tscratch, heads);
  const PrAttentionBackwardArgs args{address(dout.data()), address(qkv.data()),
                                     address(probs.data()), address(dqkv.data()),
                                     address(scratch.data()), b, t, c, heads};
  run("attention_backward", args, groups_1d(b * heads * t));
  run("attention_backward_kv", args, groups_1d(b * heads * t));
  expect_near_all(scratch, download(tscratch), 1e-5f, "dS");
  expect_near_all(dqkv, download(tdqkv), 1e-4f, "dqkv");
}

TEST(GpuSourceOnHostLaunch, RejectsWrongWorkgroupAndUnknownKernel) {
  PrFillArgs args{};
  petaring::testing::expect_error(
      [&] { run_host_kernel("fill", &args, sizeof args, {1, 1, 1}, {64, 1, 1}); },
      ErrorKind::kInvalidArgument, {"fill", "64x1x1", "256x1x1"});
  petaring::testing::expect_error(
      [&] { run_host_kernel("fill", &args, 8, {1, 1, 1}, kBlock); },
      ErrorKind::kInvalidArgument, {"needs 16 kernarg bytes, got 8"});
  petaring::testing::expect_error(
      [&] { run_host_kernel("softmax", &args, sizeof args, {1, 1, 1}, kBlock); },
      ErrorKind::kNotFound, {"no GPU kernel 'softmax'", "gemm", "scale"});
  EXPECT_EQ(host_kernels().size(), 33u);  // the table, attention_backward_kv(_bf16), scratch_probe
}

}  // namespace
}  // namespace petaring::amd::gpu
