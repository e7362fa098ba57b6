// The model and data source a recipe names: the one place that maps recipe types to
// classes. A new model or data set adds a branch here.
#pragma once

#include <memory>

#include "device/device.h"
#include "trainer/data/source.h"
#include "trainer/model.h"
#include "trainer/recipe.h"

namespace petaring {

// Reads (and checks) recipe.data and builds its source, with device buffers for the
// larger of a training micro-batch and an evaluation batch (eval_batch_rows).
std::unique_ptr<DataSource> make_data_source(const Recipe& recipe, Device& device);
// Builds recipe.model on `device` for batches of up to data.max_batch() samples;
// parameters are not initialized yet. `data` is the source it will be fed from (its
// shapes are checked against the model's).
std::unique_ptr<Model> make_model(const Recipe& recipe, const DataSource& data, Device& device);

// Rows per evaluation batch and the largest batch the model and source must accept.
int64_t eval_batch_rows(const Recipe& recipe, int64_t items_per_sample);

}  // namespace petaring
