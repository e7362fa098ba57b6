// The order in which models report finished gradients, as gradient buckets
// (trainer/grad_sync.h) need it: a bucket closes only over one contiguous slice, so a
// model that reports its tensors in exactly the reverse of its layout lets a bucket close
// after any tensor, whereas a weight reported before the bias that follows it in the
// layout can strand that bias and hold every later bucket until backward ends.
#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "device/cpu/cpu_device.h"
#include "trainer/gpt.h"

namespace petaring {
namespace {

// (offset, count) per on_grad_ready call of one forward_backward.
std::vector<std::pair<int64_t, int64_t>> reports(bool tied) {
  CpuDeviceOptions options;
  options.threads = 1;
  auto device = std::move(open_cpu_devices(options)[0]);
  auto queue = device->create_queue(QueueKind::kCompute);
  GptConfig config;
  config.vocab = 11;
  config.context = 4;
  config.layers = 3;
  config.heads = 2;
  config.dim = 8;
  config.tie_embeddings = tied;
  Gpt gpt(config, *device, 2);
  gpt.initialize(*queue, 3);
  auto input_ids = device->allocate(8 * sizeof(int32_t));
  auto target_ids = device->allocate(8 * sizeof(int32_t));
  Tensor x(input_ids.get(), 0, Shape{2, 4}, DType::kI32);
  Tensor y(target_ids.get(), 0, Shape{2, 4}, DType::kI32);
  for (int i = 0; i < 8; ++i) {
    x.data<int32_t>()[i] = (i * 5) % 11;
    y.data<int32_t>()[i] = (i * 5 + 5) % 11;
  }
  Batch batch{x, y, 2, 8};
  std::vector<std::pair<int64_t, int64_t>> out;
  StepOptions step;
  step.on_grad_ready = [&](int64_t offset, int64_t count, std::shared_ptr<Event>) {
    out.emplace_back(offset, count);
  };
  float loss = 0;
  gpt.forward_backward(*queue, batch, step, &loss);
  queue->synchronize();
  EXPECT_EQ(out.empty() ? -1 : out.front().first + out.front().second, gpt.num_params())
      << "the first report must end at the end of the gradient buffer";
  return out;
}

TEST(GradOrderTest, GptReportsItsTensorsInExactlyTheReverseOfItsLayout) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const auto order = reports(tied);
    ASSERT_FALSE(order.empty());
    // Each report ends where the previous one began: the finished gradients are always
    // one slice [offset, end), so a bucket may close after any of them.
    for (size_t i = 1; i < order.size(); ++i) {
      EXPECT_EQ(order[i].first + order[i].second, order[i - 1].first)
          << "report " << i << " at offset " << order[i].first << " (+" << order[i].second
          << ") does not end where report " << i - 1 << " began (" << order[i - 1].first << ")";
    }
    EXPECT_EQ(order.back().first, 0);
  }
}

}  // namespace
}  // namespace petaring
