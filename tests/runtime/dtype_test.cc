#include "runtime/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace petaring {
namespace {

// GCC's _Float16 conversions (software, round-to-nearest-even) are the reference.
uint16_t reference_f16_bits(float value) {
  _Float16 h = static_cast<_Float16>(value);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

TEST(DTypeTest, F16RoundTripsEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    F16 h{static_cast<uint16_t>(bits)};
    float f = f16_to_f32(h);
    _Float16 ref;
    std::memcpy(&ref, &bits, 2);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(ref))) << bits;
      EXPECT_TRUE(std::isnan(f16_to_f32(f16_from_f32(f))));
      continue;
    }
    ASSERT_EQ(f32_bits(f), f32_bits(static_cast<float>(ref))) << "pattern " << bits;
    ASSERT_EQ(f16_from_f32(f).bits, bits) << "pattern " << bits;
  }
}

TEST(DTypeTest, F16FromF32MatchesReferenceOnHalfwayAndRandomValues) {
  // Every f32 exactly halfway between two f16 neighbours, and its two f32 neighbours.
  for (uint32_t bits = 0; bits < 0x7c00; ++bits) {
    float lo = f16_to_f32(F16{static_cast<uint16_t>(bits)});
    float hi = f16_to_f32(F16{static_cast<uint16_t>(bits + 1)});
    float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), -mid}) {
      ASSERT_EQ(f16_from_f32(v).bits, reference_f16_bits(v)) << v;
    }
  }
  uint32_t state = 12345;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    float v = f32_from_bits(state);
    if (std::isnan(v)) continue;
    ASSERT_EQ(f16_from_f32(v).bits, reference_f16_bits(v)) << std::hexfloat << v;
  }
  EXPECT_EQ(f16_from_f32(65520.0f).bits, 0x7c00);  // ties to even: rounds to infinity
  EXPECT_EQ(f16_from_f32(65519.0f).bits, 0x7bff);
  EXPECT_EQ(f16_from_f32(std::numeric_limits<float>::infinity()).bits, 0x7c00);
}

// bf16 reference: pick the nearer of the two bf16 neighbours in double, ties to even.
uint16_t reference_bf16_bits(float value) {
  uint32_t bits = f32_bits(value);
  uint16_t down = static_cast<uint16_t>(bits >> 16);
  if ((bits & 0xffff) == 0) return down;
  uint16_t up = static_cast<uint16_t>(down + 1);
  double dv = value;
  double dd = bf16_to_f32(BF16{down});
  double du = (up & 0x7f80) == 0x7f80 && ((down & 0x7f80) == 0x7f00) && (up & 0x7f) == 0
                  ? std::copysign(std::ldexp(1.0, 128), dv)  // rounding up overflows
                  : static_cast<double>(bf16_to_f32(BF16{up}));
  double ed = std::fabs(dv - dd), eu = std::fabs(du - dv);
  if (ed < eu) return down;
  if (eu < ed) return up;
  return (down & 1) ? up : down;
}

TEST(DTypeTest, BF16FromF32IsRoundToNearestEven) {
  uint32_t state = 99;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    float v = f32_from_bits(state);
    if (std::isnan(v) || std::isinf(v)) continue;
    ASSERT_EQ(bf16_from_f32(v).bits, reference_bf16_bits(v)) << std::hexfloat << v;
  }
  EXPECT_EQ(bf16_from_f32(1.0f).bits, 0x3f80);
  EXPECT_EQ(bf16_from_f32(f32_from_bits(0x3f808000)).bits, 0x3f80);  // tie, even stays
  EXPECT_EQ(bf16_from_f32(f32_from_bits(0x3f818000)).bits, 0x3f82);  // tie, odd rounds up
  EXPECT_TRUE(std::isnan(bf16_to_f32(bf16_from_f32(std::nanf("")))));
  EXPECT_EQ(bf16_from_f32(f32_from_bits(0x7f7fffff)).bits, 0x7f80);  // max f32 -> inf
}

TEST(DTypeTest, NamesParse) {
  DType d;
  ASSERT_TRUE(parse_dtype("bf16", &d));
  EXPECT_EQ(d, DType::kBF16);
  EXPECT_FALSE(parse_dtype("f8", &d));
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
}

}  // namespace
}  // namespace petaring
