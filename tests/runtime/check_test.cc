#include "runtime/check.h"

#include <gtest/gtest.h>

#include "runtime/error.h"
#include "runtime/shape.h"

namespace petaring {
namespace {

TEST(CheckTest, FailedCheckPrintsValuesAndLocation) {
  int a = 14, b = 72;
  try {
    PR_CHECK_EQ(a, b) << "while packing layer " << 3;
    FAIL() << "check did not throw";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
    EXPECT_NE(what.find("check_test.cc:"), std::string::npos) << what;
    EXPECT_NE(what.find("a == b (14 vs 72)"), std::string::npos) << what;
    EXPECT_NE(what.find("while packing layer 3"), std::string::npos) << what;
  }
}

TEST(CheckTest, PassingCheckDoesNothingAndEvaluatesOnce) {
  int calls = 0;
  auto f = [&] { return ++calls; };
  PR_CHECK_EQ(f(), 1);
  EXPECT_EQ(calls, 1);
  PR_CHECK(calls == 1) << "never printed";
}

TEST(CheckTest, ErrorKindsMapToExitCodes) {
  EXPECT_EQ(Error(ErrorKind::kInvalidArgument, "x").exit_code(), 2);
  EXPECT_EQ(Error(ErrorKind::kTimeout, "x").exit_code(), 1);
  EXPECT_EQ(error_kind_name(ErrorKind::kOutOfMemory), "out of memory");
}

TEST(ShapeTest, NumelAndPrinting) {
  Shape s{64, 784};
  EXPECT_EQ(s.numel(), 64 * 784);
  EXPECT_EQ(s.to_string(), "(64, 784)");
  EXPECT_EQ(s.dim(-1), 784);
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_THROW(s.dim(2), Error);
  EXPECT_THROW((Shape{1, 2, 3, 4, 5, 6, 7}), Error);
}

}  // namespace
}  // namespace petaring
