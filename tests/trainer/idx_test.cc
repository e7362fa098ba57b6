#include "trainer/data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "trainer/data/fashion_mnist.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("petaring_idx_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write_gz(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path = (dir_ / name).string();
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return path;
  }
  static std::vector<uint8_t> header(uint32_t magic, std::vector<uint32_t> dims) {
    std::vector<uint8_t> out;
    auto put = [&](uint32_t v) {
      for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
    };
    put(magic);
    for (uint32_t d : dims) put(d);
    return out;
  }
  std::string message_of(const std::string& path, int dims) {
    try {
      read_idx_u8(path, dims);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(IdxTest, ReadsAValidFile) {
  auto bytes = header(0x00000803, {2, 2, 3});
  for (int i = 0; i < 12; ++i) bytes.push_back(static_cast<uint8_t>(i * 7));
  IdxArray a = read_idx_u8(write_gz("ok.gz", bytes), 3);
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 2, 3}));
  ASSERT_EQ(a.data.size(), 12u);
  EXPECT_EQ(a.data[11], 77);
}

TEST_F(IdxTest, RejectsBadMagicTruncationAndMissingFiles) {
  std::string bad = write_gz("bad.gz", header(0x00000903, {1, 1, 1}));
  EXPECT_NE(message_of(bad, 3).find("bad IDX magic number 0x00000903"), std::string::npos);
  std::string wrong_rank = write_gz("rank.gz", header(0x00000801, {4}));
  EXPECT_NE(message_of(wrong_rank, 3).find("bad IDX magic"), std::string::npos);
  auto truncated = header(0x00000801, {10});
  truncated.push_back(1);
  std::string path = write_gz("short.gz", truncated);
  std::string msg = message_of(path, 1);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  try {
    read_idx_u8((dir_ / "absent.gz").string(), 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
  }
}

TEST_F(IdxTest, MissingDataSetNamesThePackage) {
  try {
    load_fashion_mnist(dir_.string());
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(msg.find("train-images-idx3-ubyte.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
  }
}

TEST(FashionMnistTest, LoadsTheDebianPackage) {
  const std::string folder = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(folder)) GTEST_SKIP() << folder << " is absent: apt-get install dataset-fashion-mnist";
  FashionMnist data = load_fashion_mnist(folder);
  EXPECT_EQ(data.train.count, 60000);
  EXPECT_EQ(data.test.count, 10000);
  EXPECT_EQ(data.train.pixels, 784);
  std::vector<int> per_class(10);
  for (int32_t l : data.train.labels) per_class[static_cast<size_t>(l)]++;
  for (int c : per_class) EXPECT_EQ(c, 6000);  // Fashion-MNIST is balanced
  PixelScale s = pixel_statistics(data.train);
  EXPECT_NEAR(s.mean, 0.2860, 1e-3);
  EXPECT_NEAR(s.std, 0.3530, 1e-3);
}

}  // namespace
}  // namespace petaring
