// Reader for IDX files (the MNIST family's format), gzip-compressed or not.
//
// Layout: a big-endian magic word 0x0000TTDD (TT = element type, 0x08 = unsigned byte;
// DD = number of dimensions), DD big-endian u32 extents, then the elements row-major.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace petaring {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Reads a u8 IDX file with `expected_dims` dimensions. Throws Error(kNotFound) when the
// file is missing and Error(kInvalidArgument) naming the file for a bad magic number,
// wrong rank or a truncated body.
IdxArray read_idx_u8(const std::string& path, int expected_dims);

}  // namespace petaring
