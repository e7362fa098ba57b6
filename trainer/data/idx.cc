#include "trainer/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "runtime/error.h"

namespace petaring {
namespace {

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `bytes` or returns false (gzread also reads plain, uncompressed files).
bool read_exact(gzFile file, void* out, size_t bytes) {
  auto* cursor = static_cast<char*>(out);
  while (bytes > 0) {
    unsigned chunk = bytes > (1u << 30) ? (1u << 30) : static_cast<unsigned>(bytes);
    int got = gzread(file, cursor, chunk);
    if (got <= 0) return false;
    cursor += got;
    bytes -= static_cast<size_t>(got);
  }
  return true;
}

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

IdxArray read_idx_u8(const std::string& path, int expected_dims) {
  if (!std::filesystem::exists(path)) {
    PR_FAIL(kNotFound, path, ": no such file");
  }
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) PR_FAIL(kPermissionDenied, path, ": cannot open: ", std::strerror(errno));
  uint8_t header[4];
  if (!read_exact(file.get(), header, 4)) {
    PR_FAIL(kInvalidArgument, path, ": empty or unreadable; expected an IDX file (re-install the data set)");
  }
  uint32_t magic = big_endian(header);
  int dims = static_cast<int>(magic & 0xff);
  if ((magic >> 16) != 0 || ((magic >> 8) & 0xff) != 0x08 || dims != expected_dims) {
    char text[16];
    std::snprintf(text, sizeof(text), "0x%08x", magic);
    PR_FAIL(kInvalidArgument, path, ": bad IDX magic number ", text, "; expected 0x0000080",
            expected_dims, " (unsigned bytes, ", expected_dims,
            " dimensions). Is this the right file?");
  }
  IdxArray array;
  int64_t total = 1;
  for (int i = 0; i < dims; ++i) {
    uint8_t extent[4];
    if (!read_exact(file.get(), extent, 4)) PR_FAIL(kInvalidArgument, path, ": truncated IDX header");
    array.dims.push_back(big_endian(extent));
    total *= array.dims.back();
  }
  if (total > (int64_t{1} << 34)) PR_FAIL(kInvalidArgument, path, ": IDX extents too large");
  array.data.resize(static_cast<size_t>(total));
  if (!read_exact(file.get(), array.data.data(), array.data.size())) {
    PR_FAIL(kInvalidArgument, path, ": truncated: the header promises ", total,
            " bytes of data; re-download or re-install the data set");
  }
  return array;
}

}  // namespace petaring
