// Element types and exact conversions.
//
// bf16 and f16 are stored as their 16-bit patterns. Conversions from f32 round to
// nearest, ties to even (IEEE 754 default), handle subnormals, overflow to infinity
// and keep NaN a NaN (quiet). Conversions to f32 are exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace petaring {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64, kU8 };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
// Parses "f32", "bf16", "f16", "i32", "i64", "u8"; returns false when unknown.
bool parse_dtype(std::string_view text, DType* dtype);

struct BF16 {
  uint16_t bits = 0;
};
struct F16 {
  uint16_t bits = 0;
};

inline uint32_t f32_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}
inline float f32_from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// bf16 is the top half of an f32: rounding adds 0x7fff plus the lowest kept bit.
inline BF16 bf16_from_f32(float value) {
  uint32_t bits = f32_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return BF16{static_cast<uint16_t>((bits >> 16) | 0x0040u)};
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return BF16{static_cast<uint16_t>((bits + rounding) >> 16)};
}
inline float bf16_to_f32(BF16 value) { return f32_from_bits(static_cast<uint32_t>(value.bits) << 16); }

F16 f16_from_f32(float value);
float f16_to_f32(F16 value);

}  // namespace petaring
