// reduce_into and average_in_place on single buffers: the per-dtype rules of reduce.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "collectives/reduce.h"
#include "runtime/dtype.h"
#include "runtime/error.h"

namespace petaring {
namespace {

TEST(Reduce, IntegersAreExactAndSumsWrap) {
  std::vector<int32_t> a = {std::numeric_limits<int32_t>::max(), -5, 7, 0};
  std::vector<int32_t> b = {1, 3, -9, std::numeric_limits<int32_t>::min()};
  std::vector<int32_t> sum = a, max = a, min = a;
  reduce_into(sum.data(), b.data(), 4, DType::kI32, ReduceOp::kSum);
  reduce_into(max.data(), b.data(), 4, DType::kI32, ReduceOp::kMax);
  reduce_into(min.data(), b.data(), 4, DType::kI32, ReduceOp::kMin);
  EXPECT_EQ(sum, (std::vector<int32_t>{std::numeric_limits<int32_t>::min(), -2, -2,
                                       std::numeric_limits<int32_t>::min()}));
  EXPECT_EQ(max, (std::vector<int32_t>{std::numeric_limits<int32_t>::max(), 3, 7, 0}));
  EXPECT_EQ(min, (std::vector<int32_t>{1, -5, -9, std::numeric_limits<int32_t>::min()}));
  std::vector<int64_t> big = {int64_t{1} << 62, -1}, more = {int64_t{1} << 62, -(int64_t{1} << 40)};
  reduce_into(big.data(), more.data(), 2, DType::kI64, ReduceOp::kSum);
  EXPECT_EQ(big[0], std::numeric_limits<int64_t>::min());
  EXPECT_EQ(big[1], -1 - (int64_t{1} << 40));
}

// bf16 and f16: widen, combine in f32, round to nearest even once per combine.
TEST(Reduce, HalfFloatsRoundOncePerCombineToNearestEven) {
  // 1 + 2^-8 is a bf16 tie between 1 and 1 + 2^-7: even mantissa wins (1).
  std::vector<uint16_t> a(300, bf16_from_f32(1.0f).bits), b(300, bf16_from_f32(0x1p-8f).bits);
  reduce_into(a.data(), b.data(), a.size(), DType::kBF16, ReduceOp::kSum);
  for (uint16_t bits : a) ASSERT_EQ(bf16_to_f32(BF16{bits}), 1.0f);
  // 1 + 3 * 2^-8 is a tie between 1 + 2^-7 and 1 + 2^-6: rounds up to the even one.
  uint16_t x = bf16_from_f32(1.0f + 0x1p-7f).bits, y = bf16_from_f32(0x1p-8f).bits;
  reduce_into(&x, &y, 1, DType::kBF16, ReduceOp::kSum);
  EXPECT_EQ(bf16_to_f32(BF16{x}), 1.0f + 0x1p-6f);
  // f16: 2048 + 1 is a tie (spacing 2): stays 2048; 65504 + 32 overflows to infinity.
  uint16_t h[2] = {f16_from_f32(2048.0f).bits, f16_from_f32(65504.0f).bits};
  uint16_t g[2] = {f16_from_f32(1.0f).bits, f16_from_f32(32.0f).bits};
  reduce_into(h, g, 2, DType::kF16, ReduceOp::kSum);
  EXPECT_EQ(f16_to_f32(F16{h[0]}), 2048.0f);
  EXPECT_TRUE(std::isinf(f16_to_f32(F16{h[1]})));
  // The average divides the f32 widening once and rounds: 3 / 2 in bf16 is 1.5 exactly.
  uint16_t three = bf16_from_f32(3.0f).bits;
  average_in_place(&three, 1, DType::kBF16, 2);
  EXPECT_EQ(bf16_to_f32(BF16{three}), 1.5f);
}

TEST(Reduce, MaxAndMinPropagateNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a = {nan, 1.0f, 2.0f}, b = {3.0f, nan, -1.0f};
  std::vector<float> max = a, min = a;
  reduce_into(max.data(), b.data(), 3, DType::kF32, ReduceOp::kMax);
  reduce_into(min.data(), b.data(), 3, DType::kF32, ReduceOp::kMin);
  EXPECT_TRUE(std::isnan(max[0]) && std::isnan(max[1]));
  EXPECT_TRUE(std::isnan(min[0]) && std::isnan(min[1]));
  EXPECT_EQ(max[2], 2.0f);
  EXPECT_EQ(min[2], -1.0f);
  uint16_t h = f16_from_f32(nan).bits, g = f16_from_f32(1.0f).bits;
  reduce_into(&g, &h, 1, DType::kF16, ReduceOp::kMax);
  EXPECT_TRUE(std::isnan(f16_to_f32(F16{g})));
}

TEST(Reduce, IntegerAverageAndU8AreRejected) {
  for (DType dtype : {DType::kI32, DType::kI64}) {
    try {
      validate_reduction(dtype, ReduceOp::kAverage, "allreduce");
      ADD_FAILURE() << "accepted average over " << dtype_name(dtype);
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(dtype_name(dtype)), std::string::npos);
    }
    EXPECT_NO_THROW(validate_reduction(dtype, ReduceOp::kMax, "allreduce"));
  }
  EXPECT_THROW(validate_reduction(DType::kU8, ReduceOp::kSum, "allreduce"), Error);
  EXPECT_NO_THROW(validate_reduction(DType::kBF16, ReduceOp::kAverage, "allreduce"));
}

}  // namespace
}  // namespace petaring
