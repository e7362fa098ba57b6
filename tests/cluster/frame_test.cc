// Frames: round trip, every header check, and a fuzz of the decoder (random bytes and
// mutations of valid frames) that must only ever return a message or throw Error.
#include <gtest/gtest.h>

#include <random>

#include "cluster/frame.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

std::string submit_frame(const std::string& recipe) {
  capnp::MallocMessageBuilder message;
  auto submit = message.initRoot<wire::Envelope>().initSubmit();
  submit.setRecipeYaml(recipe);
  submit.setRecipeName("mlp.yaml");
  submit.setGpus(4);
  submit.setTenant("alice");
  return encode_frame(message);
}

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST(Frame, RoundTrip) {
  std::string frame = submit_frame("model: {}\n");
  auto decoded = decode_frame(bytes(frame), frame.size());
  ASSERT_TRUE(decoded->envelope().isSubmit());
  EXPECT_EQ(decoded->kind(), "submit");
  EXPECT_EQ(std::string(decoded->envelope().getSubmit().getRecipeYaml()), "model: {}\n");
  EXPECT_EQ(decoded->envelope().getSubmit().getGpus(), 4u);
}

TEST(Frame, HeaderChecks) {
  std::string good = submit_frame("x");
  auto expect_invalid = [](std::string frame, const std::string& words) {
    try {
      decode_frame(bytes(frame), frame.size());
      ADD_FAILURE() << "accepted a frame that should fail with: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  std::string bad = good;
  bad[0] = 'X';
  expect_invalid(bad, "magic");
  bad = good;
  bad[4] = 9;
  expect_invalid(bad, "version 9");
  bad = good;
  bad[8] = 5;  // length 5 + ...: not a multiple of 8 (or not matching)
  bad[9] = 0; bad[10] = 0; bad[11] = 0;
  expect_invalid(bad, "multiple of 8");
  bad = good;
  bad[11] = 0x7f;  // ~2 GiB
  expect_invalid(bad, "exceeds the limit");
  expect_invalid(good.substr(0, 5), "truncated");
  expect_invalid(good.substr(0, good.size() - 8), "holds");
}

TEST(Frame, FuzzDecoderNeverCrashes) {
  std::mt19937_64 random(12345);
  std::vector<std::string> seeds = {submit_frame("model:\n  layers: [784, 10]\n"), submit_frame("")};
  {
    capnp::MallocMessageBuilder message;
    auto jobs = message.initRoot<wire::Envelope>().initJobs(3);
    jobs[1].setName("a job");
    jobs[2].setPlacement("n1:0,n1:1");
    seeds.push_back(encode_frame(message));
  }
  int decoded = 0, rejected = 0;
  constexpr int kInputs = 120000;
  for (int i = 0; i < kInputs; ++i) {
    std::string input;
    if (i % 4 == 0) {  // random bytes, sometimes behind a valid header
      size_t size = random() % 96;
      input.resize(size);
      for (auto& c : input) c = static_cast<char>(random());
      if (i % 8 == 0 && size >= 8) {
        std::string header = seeds[0].substr(0, 8);
        uint32_t length = static_cast<uint32_t>(size / 8 * 8);
        for (int b = 0; b < 4; ++b) header.push_back(static_cast<char>((length >> (8 * b)) & 0xff));
        input = header + input.substr(0, length);
      }
    } else {  // a valid frame with a few payload bytes flipped, dropped or added
      input = seeds[random() % seeds.size()];
      int flips = 1 + static_cast<int>(random() % 4);
      for (int f = 0; f < flips; ++f) {
        size_t at = kFrameHeaderBytes + random() % (input.size() - kFrameHeaderBytes);
        input[at] = static_cast<char>(random());
      }
      if (random() % 16 == 0) input.resize(random() % input.size());
    }
    try {
      auto frame = decode_frame(bytes(input), input.size());
      frame->kind();  // any union tag, even unknown, names itself
      ++decoded;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      ++rejected;
    }
  }
  EXPECT_EQ(decoded + rejected, kInputs);
  EXPECT_GT(rejected, kInputs / 10);  // the fuzz reaches the checks
  EXPECT_GT(decoded, 100);            // and mutations that stay readable
}

}  // namespace
}  // namespace petaring::cluster
