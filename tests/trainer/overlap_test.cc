// Gradient buckets overlap backward: with 2 ranks, a bucket's allreduce starts, and even
// finishes, while backward is still running. Checked from the order of events, not from
// timing: the mock model's backward stops after its first gradient and goes on only once
// that bucket's allreduce is done, which a loop that reduces after backward never allows.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "collectives/communicator.h"
#include "collectives/transport/local/local_transport.h"
#include "device/cpu/cpu_device.h"
#include "device/kernels.h"
#include "trainer/data/source.h"
#include "trainer/train.h"

namespace petaring {
namespace {

// Events of one rank, in the order they happened.
class Trace {
 public:
  void add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(what);
    changed_.notify_all();
  }
  // Waits (at most 20 s) for `what`; false when it never came.
  bool wait_for(const std::string& what) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(20), [&] {
      return std::find(events_.begin(), events_.end(), what) != events_.end();
    });
  }
  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> events_;
};

// A model of three parameter tensors [A (3000) | B (2000) | C (1000)] whose backward
// writes `value` into C, B, then A, reporting each. Between C and B it waits on the queue
// until the trace shows the first bucket done.
class MockModel : public Model {
 public:
  MockModel(Device& device, float value, Trace& trace) : value_(value), trace_(trace) {
    params_ = device.allocate(kCount * sizeof(float));
    grads_ = device.allocate(kCount * sizeof(float));
    loss_ = device.allocate(sizeof(float));
  }
  std::string describe() const override { return "mock"; }
  int64_t num_params() const override { return kCount; }
  Tensor params() const override { return Tensor(params_.get(), 0, Shape{kCount}, DType::kF32); }
  Tensor grads() const override { return Tensor(grads_.get(), 0, Shape{kCount}, DType::kF32); }
  int64_t max_batch() const override { return 4; }
  void initialize(Queue& q, uint64_t) override {
    kernels::fill(q, params(), 0.0f);
    q.synchronize();
  }
  void forward_backward(Queue& q, const Batch&, const StepOptions& options, float* loss) override {
    Tensor loss_view(loss_.get(), 0, Shape{1}, DType::kF32);
    kernels::fill(q, loss_view, value_);
    q.read(loss, loss_view);
    auto write = [&](int64_t offset, int64_t count) {
      kernels::fill(q, grads().slice(offset, Shape{count}), value_);
      if (options.on_grad_ready) options.on_grad_ready(offset, count, std::shared_ptr<Event>(q.record()));
    };
    write(5000, 1000);  // C
    q.host_call([this] {
      if (!trace_.wait_for("done 0")) stalled_ = true;
      trace_.add("backward continues");
    });
    write(3000, 2000);  // B
    write(0, 3000);     // A
  }
  EvalSums evaluate(Queue&, const Batch&) override { return {}; }
  bool stalled() const { return stalled_; }

 private:
  static constexpr int64_t kCount = 6000;
  float value_;
  Trace& trace_;
  bool stalled_ = false;
  std::unique_ptr<Buffer> params_, grads_, loss_;
};

class MockSource : public DataSource {
 public:
  explicit MockSource(Device& device) { buffer_ = device.allocate(16); }
  std::string describe() const override { return "mock data"; }
  int64_t size(Split split) const override { return split == Split::kTrain ? 16 : 0; }
  int64_t max_batch() const override { return 4; }
  Batch load(Queue&, Split, int64_t, const int64_t*, int64_t n) override {
    Batch batch;
    batch.inputs = Tensor(buffer_.get(), 0, Shape{n}, DType::kF32);
    batch.targets = batch.inputs;
    batch.samples = batch.items = n;
    return batch;
  }

 private:
  std::unique_ptr<Buffer> buffer_;
};

TEST(OverlapTest, BucketsStartAndFinishBeforeBackwardEnds) {
  Recipe recipe;
  recipe.source = "test";
  recipe.training.batch_size = 2;
  recipe.training.max_steps = 1;
  recipe.training.bucket_mb = 1e-6;  // every tensor its own bucket
  auto transports = make_local_transports(2);
  Trace traces[2];
  std::vector<float> grads[2];
  std::vector<int64_t> buckets[2];
  bool stalled[2] = {false, false};
  SyncStats stats[2];
  std::vector<std::thread> threads;
  std::exception_ptr errors[2];
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        Communicator comm(std::move(transports[static_cast<size_t>(r)]));
        auto device = std::move(open_cpu_devices(CpuDeviceOptions{})[0]);
        MockModel model(*device, static_cast<float>(r + 1), traces[r]);
        MockSource source(*device);
        Trainer trainer(recipe, model, source, *device, comm);
        trainer.gradient_sync()->set_trace([&, r](const std::string& e) { traces[r].add(e); });
        trainer.step();
        buckets[r] = trainer.gradient_sync()->bucket_sizes();
        stats[r] = trainer.last_sync();
        stalled[r] = model.stalled();
        const float* g = model.grads().data<float>();
        grads[r].assign(g, g + model.num_params());
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_FALSE(stalled[r]) << "backward waited 20 s for the first bucket's allreduce";
    EXPECT_EQ(buckets[r], (std::vector<int64_t>{1000, 2000, 3000}));
    const std::vector<std::string> expected = {"issue 0",          "done 0", "backward continues",
                                               "issue 1",          "issue 2", "backward end"};
    std::vector<std::string> events = traces[r].events();
    // "done 1" and "done 2" may come before or after "backward end"; drop them.
    std::erase_if(events, [](const std::string& e) { return e == "done 1" || e == "done 2"; });
    EXPECT_EQ(events, expected);
    EXPECT_GT(stats[r].hidden_s, 0.0);
    EXPECT_LE(stats[r].hidden_s, stats[r].comm_s);
    ASSERT_EQ(grads[r].size(), 6000u);
    for (float g : grads[r]) ASSERT_EQ(g, 1.5f) << "not the average of 1 and 2";
  }
}

}  // namespace
}  // namespace petaring
