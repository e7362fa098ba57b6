// Fashion-MNIST (or MNIST) from the four IDX files Debian's dataset-fashion-mnist package
// installs at /usr/share/datasets/fashion-mnist.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace petaring {

// One split of the data set in host memory.
struct ImageSet {
  int64_t count = 0;
  int64_t pixels = 0;          // per image: rows * cols (784)
  std::vector<uint8_t> images; // (count, pixels)
  std::vector<int32_t> labels; // (count), in [0, 10)
};

struct FashionMnist {
  ImageSet train;  // 60,000 images
  ImageSet test;   // 10,000 images
};

// Reads and checks the four files in `folder`. Throws Error(kNotFound) naming the missing
// file and the package that provides it; kInvalidArgument for bad or mismatched files.
FashionMnist load_fashion_mnist(const std::string& folder);

// Per-pixel scaling: x = (pixel / 255 - mean) / std. The defaults leave pixel / 255.
struct PixelScale {
  float mean = 0.0f;
  float std = 1.0f;
};
// Mean and standard deviation of pixel / 255 over a set.
PixelScale pixel_statistics(const ImageSet& set);

// Writes images[indices[i]] as f32 rows into out (indices.size(), pixels) and their
// labels into labels_out.
void gather_batch(const ImageSet& set, const int64_t* indices, int64_t n, PixelScale scale,
                  float* out, int32_t* labels_out);

}  // namespace petaring
