#include "trainer/factory.h"

#include <algorithm>

#include "runtime/error.h"
#include "trainer/data/fashion_source.h"
#include "trainer/mlp.h"

namespace petaring {
namespace {

// Evaluation batches aim at this many items (rows or tokens), at least one training batch.
constexpr int64_t kEvalItems = 500;

}  // namespace

std::unique_ptr<DataSource> make_data_source(const Recipe& recipe, Device& device) {
  if (recipe.data.type == "fashion_mnist") {
    return std::make_unique<FashionMnistSource>(load_fashion_mnist(recipe.data.path),
                                                recipe.data.normalize, device,
                                                eval_batch_rows(recipe, 1));
  }
  PR_FAIL(kInvalidArgument, recipe.source, ": data.type '", recipe.data.type,
          "' has no loader in this build; use fashion_mnist");
}

std::unique_ptr<Model> make_model(const Recipe& recipe, const DataSource& data, Device& device) {
  const int64_t max_batch = data.max_batch();
  if (recipe.model.type == "mlp") {
    const auto* images = dynamic_cast<const FashionMnistSource*>(&data);
    if (images == nullptr) {
      PR_FAIL(kInvalidArgument, recipe.source, ": model.type mlp needs image data "
              "(data.type fashion_mnist), not ", recipe.data.type);
    }
    if (recipe.model.layers.front() != images->pixels()) {
      PR_FAIL(kInvalidArgument, recipe.source, ": model.layers[0] is ",
              recipe.model.layers.front(), " but the images have ", images->pixels(), " pixels");
    }
    return std::make_unique<Mlp>(recipe.model, device, max_batch);
  }
  PR_FAIL(kInvalidArgument, recipe.source, ": model.type '", recipe.model.type,
          "' has no implementation in this build; use mlp");
}

int64_t eval_batch_rows(const Recipe& recipe, int64_t items_per_sample) {
  return std::max(recipe.training.batch_size, kEvalItems / std::max<int64_t>(1, items_per_sample));
}

}  // namespace petaring
