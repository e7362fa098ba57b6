#include "trainer/factory.h"

#include <algorithm>

#include "runtime/error.h"
#include "trainer/data/fashion_source.h"
#include "trainer/data/text.h"
#include "trainer/data/tokens.h"
#include "trainer/gpt.h"
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
  if (recipe.data.type == "text" || recipe.data.type == "tokens") {
    const bool text = recipe.data.type == "text";
    std::vector<uint16_t> tokens = text ? read_text_file(recipe.data.path)
                                        : read_token_file(recipe.data.path, recipe.model.vocab);
    const int64_t bytes = static_cast<int64_t>(tokens.size()) * (text ? 1 : 2);
    return std::make_unique<TokenSource>(
        str_cat(recipe.data.type, " ", recipe.data.path, " (", bytes, " bytes)"),
        str_cat(recipe.source, ": data.path \"", recipe.data.path, "\""), std::move(tokens),
        recipe.model.context, recipe.training.seed, device,
        eval_batch_rows(recipe, recipe.model.context));
  }
  PR_FAIL(kInvalidArgument, recipe.source, ": data.type '", recipe.data.type,
          "' has no loader in this build; use fashion_mnist, text or tokens");
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
  if (recipe.model.type == "gpt") {
    if (dynamic_cast<const TokenSource*>(&data) == nullptr) {
      PR_FAIL(kInvalidArgument, recipe.source, ": model.type gpt needs token data "
              "(data.type text or tokens), not ", recipe.data.type);
    }
    GptConfig config = gpt_config(recipe.model);
    config.precision = recipe.training.precision == "bf16" ? DType::kBF16 : DType::kF32;
    return std::make_unique<Gpt>(config, device, max_batch);
  }
  PR_FAIL(kInvalidArgument, recipe.source, ": model.type '", recipe.model.type,
          "' has no implementation in this build; use mlp or gpt");
}

int64_t eval_batch_rows(const Recipe& recipe, int64_t items_per_sample) {
  return std::max(recipe.training.batch_size, kEvalItems / std::max<int64_t>(1, items_per_sample));
}

}  // namespace petaring
