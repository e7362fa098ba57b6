// Text and token files as GPT data: byte-level reading, uint16 token files, windows that
// are a pure function of (seed, epoch, index), and errors for missing, short or
// out-of-vocabulary data.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "device/cpu/cpu_device.h"
#include "tests/trainer/cpu_device_test.h"
#include "runtime/error.h"
#include "trainer/data/text.h"
#include "trainer/data/tokens.h"

namespace petaring {
namespace {

namespace fs = std::filesystem;

std::string temp_file(const std::string& name, const std::string& bytes) {
  fs::path p = fs::path(::testing::TempDir()) / (name + "_" + std::to_string(getpid()));
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

class TextDataTest : public testing_trainer::CpuDeviceTest {};

TEST_F(TextDataTest, TextBytesAreTokens) {
  const std::string path = temp_file("text", std::string("ab\n\xc3\xa9", 5));
  EXPECT_EQ(read_text_file(path), (std::vector<uint16_t>{'a', 'b', '\n', 0xc3, 0xa9}));
}

TEST_F(TextDataTest, MissingAndEmptyFilesAreReported) {
  try {
    read_text_file("/no/such/text.txt");
    ADD_FAILURE() << "a missing file was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/no/such/text.txt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_text_file(temp_file("empty", "")), Error);
}

TEST_F(TextDataTest, TokenFilesAreLittleEndianUint16CheckedAgainstTheVocabulary) {
  const std::string path = temp_file("tokens", std::string("\x01\x00\x00\x01\x05\x00", 6));
  EXPECT_EQ(read_token_file(path, 300), (std::vector<uint16_t>{1, 256, 5}));
  try {
    read_token_file(path, 256);
    ADD_FAILURE() << "token 256 passed a vocab of 256";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 1 (byte 2) is 256, not below model.vocab 256"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(read_token_file(temp_file("odd", "abc"), 256), Error);
}

std::vector<uint16_t> counting(int64_t n) {
  std::vector<uint16_t> tokens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) tokens[i] = static_cast<uint16_t>(i % 251);
  return tokens;
}

TEST_F(TextDataTest, WindowsAreNextTokenPairsThatDependOnSeedEpochAndIndexOnly) {
  const int64_t context = 8;
  TokenSource source("counting", "test data", counting(1000), context, 7, *device_, 4);
  // 900 training tokens: 900 / 8 - 1 windows; 100 evaluation tokens: 99 / 8 windows.
  EXPECT_EQ(source.size(Split::kTrain), 111);
  EXPECT_EQ(source.size(Split::kEval), 12);
  const int64_t indices[] = {0, 110, 5};
  Batch batch = source.load(*queue_, Split::kTrain, 3, indices, 3);
  queue_->synchronize();
  EXPECT_EQ(batch.inputs.shape, (Shape{3, context}));
  EXPECT_EQ(batch.items, 3 * context);
  const int32_t* in = batch.inputs.data<int32_t>();
  const int32_t* out = batch.targets.data<int32_t>();
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t start = source.window_start(Split::kTrain, 3, indices[b]);
    EXPECT_LE(start + context + 1, 900) << "a training window reads evaluation tokens";
    for (int64_t t = 0; t < context; ++t) {
      EXPECT_EQ(in[b * context + t], (start + t) % 251);
      EXPECT_EQ(out[b * context + t], (start + t + 1) % 251);
    }
  }
  // Same (seed, epoch, index): same window, whatever else was loaded; epochs shift.
  TokenSource again("counting", "test data", counting(1000), context, 7, *device_, 4);
  EXPECT_EQ(again.window_start(Split::kTrain, 3, 5), source.window_start(Split::kTrain, 3, 5));
  bool shifted = false;
  for (int64_t e = 0; e < 8; ++e) {
    shifted |= source.window_start(Split::kTrain, e, 0) != source.window_start(Split::kTrain, 3, 0);
  }
  EXPECT_TRUE(shifted) << "the window offset never changes across epochs";
  EXPECT_EQ(source.window_start(Split::kEval, 0, 2), 900 + 2 * context);
}

TEST_F(TextDataTest, UnigramEntropyOfTheTrainingTokens) {
  // Four symbols, equally often: log(4) nats.
  std::vector<uint16_t> tokens(400);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint16_t>(i % 4);
  TokenSource source("four", "test data", tokens, 4, 0, *device_, 1);
  EXPECT_NEAR(source.unigram_entropy(), std::log(4.0), 1e-9);
}

TEST_F(TextDataTest, TooShortForTheContextSaysWhatToDo) {
  try {
    TokenSource source("short", "data.path \"x.txt\"", counting(100), 64, 0, *device_, 1);
    ADD_FAILURE() << "100 tokens accepted for a context of 64";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("data.path \"x.txt\" has 100 tokens, too short for model.context 64"),
              std::string::npos) << message;
    EXPECT_NE(message.find("lower model.context"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace petaring
