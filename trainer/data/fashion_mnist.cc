#include "trainer/data/fashion_mnist.h"

#include <array>
#include <cmath>
#include <filesystem>

#include "runtime/error.h"
#include "trainer/data/idx.h"

namespace petaring {
namespace {

ImageSet load_split(const std::string& folder, const std::string& prefix) {
  std::string images_path = folder + "/" + prefix + "-images-idx3-ubyte.gz";
  std::string labels_path = folder + "/" + prefix + "-labels-idx1-ubyte.gz";
  for (const std::string& path : {images_path, labels_path}) {
    if (!std::filesystem::exists(path)) {
      PR_FAIL(kNotFound, path,
              ": no such file. Debian's dataset-fashion-mnist package installs the data set "
              "at /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); "
              "or point data.path at a folder holding the four IDX .gz files");
    }
  }
  IdxArray images = read_idx_u8(images_path, 3);
  IdxArray labels = read_idx_u8(labels_path, 1);
  if (images.dims[0] != labels.dims[0]) {
    PR_FAIL(kInvalidArgument, images_path, " holds ", images.dims[0], " images but ",
            labels_path, " holds ", labels.dims[0], " labels; the files do not belong together");
  }
  ImageSet set;
  set.count = images.dims[0];
  set.pixels = images.dims[1] * images.dims[2];
  set.images = std::move(images.data);
  set.labels.resize(static_cast<size_t>(set.count));
  for (int64_t i = 0; i < set.count; ++i) {
    uint8_t label = labels.data[static_cast<size_t>(i)];
    if (label > 9) {
      PR_FAIL(kInvalidArgument, labels_path, ": label ", int{label}, " at index ", i,
              " is outside [0, 10)");
    }
    set.labels[static_cast<size_t>(i)] = label;
  }
  return set;
}

}  // namespace

FashionMnist load_fashion_mnist(const std::string& folder) {
  FashionMnist data;
  data.train = load_split(folder, "train");
  data.test = load_split(folder, "t10k");
  if (data.train.pixels != data.test.pixels) {
    PR_FAIL(kInvalidArgument, folder, ": train images have ", data.train.pixels,
            " pixels but test images have ", data.test.pixels);
  }
  return data;
}

PixelScale pixel_statistics(const ImageSet& set) {
  // A histogram of the 256 byte values, then the moments from it: one integer pass over
  // the pixels instead of a floating-point one.
  std::array<uint64_t, 256> histogram{};
  for (uint8_t p : set.images) ++histogram[p];
  double sum = 0, sum_sq = 0;
  for (int value = 0; value < 256; ++value) {
    double x = value / 255.0;
    double n = static_cast<double>(histogram[static_cast<size_t>(value)]);
    sum += n * x;
    sum_sq += n * x * x;
  }
  double n = static_cast<double>(set.images.size());
  double mean = sum / n;
  return PixelScale{static_cast<float>(mean), static_cast<float>(std::sqrt(sum_sq / n - mean * mean))};
}

void gather_batch(const ImageSet& set, const int64_t* indices, int64_t n, PixelScale scale,
                  float* out, int32_t* labels_out) {
  // x = p * (1 / (255 std)) - mean / std, one multiply-add per pixel.
  const float mul = 1.0f / (255.0f * scale.std);
  const float add = -scale.mean / scale.std;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = set.images.data() + indices[i] * set.pixels;
    float* dst = out + i * set.pixels;
    for (int64_t p = 0; p < set.pixels; ++p) dst[p] = static_cast<float>(src[p]) * mul + add;
    labels_out[i] = set.labels[static_cast<size_t>(indices[i])];
  }
}

}  // namespace petaring
