#include "runtime/log.h"

#include <gtest/gtest.h>

namespace petaring {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    set_log_rank(-1);
    set_log_level(saved_);
  }
  LogLevel saved_ = log_level();
};

TEST_F(LogTest, LinesCarryRankLevelAndLocation) {
  set_log_level(LogLevel::kInfo);
  set_log_rank(3);
  ::testing::internal::CaptureStderr();
  PR_LOG(kInfo) << "ring over " << 4 << " ranks";
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.rfind("[rank 3] I ", 0), 0u) << out;
  EXPECT_NE(out.find("tests/runtime/log_test.cc:"), std::string::npos) << out;
  EXPECT_NE(out.find("] ring over 4 ranks\n"), std::string::npos) << out;
}

TEST_F(LogTest, LevelFiltersLinesAndSkipsTheirArguments) {
  set_log_level(LogLevel::kWarn);
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  ::testing::internal::CaptureStderr();
  PR_LOG(kInfo) << "hidden " << count();
  PR_LOG(kError) << "shown";
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(evaluated, 0);
  EXPECT_EQ(out.find("hidden"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("E ", 0), 0u) << out;  // no rank set: no prefix
}

TEST_F(LogTest, ParsesLevelNames) {
  LogLevel level;
  ASSERT_TRUE(parse_log_level("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  ASSERT_TRUE(parse_log_level("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarn);
  EXPECT_FALSE(parse_log_level("loud", &level));
}

}  // namespace
}  // namespace petaring
