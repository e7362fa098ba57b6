#include "runtime/dtype.h"

namespace petaring {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  return "?";
}

bool parse_dtype(std::string_view text, DType* dtype) {
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kI64, DType::kU8}) {
    if (dtype_name(d) == text) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

// f16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
F16 f16_from_f32(float value) {
  uint32_t bits = f32_bits(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) {  // NaN: keep the top mantissa bits, force quiet.
    return F16{static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu))};
  }
  if (magnitude >= 0x477ff000u) {  // rounds to >= 65520: infinity
    return F16{static_cast<uint16_t>(sign | 0x7c00u)};
  }
  int exponent = static_cast<int>(magnitude >> 23) - 127;
  if (exponent >= -14) {  // normal f16
    uint32_t mantissa = magnitude & 0x7fffffu;
    uint32_t half = (static_cast<uint32_t>(exponent + 15) << 10) | (mantissa >> 13);
    uint32_t rest = mantissa & 0x1fffu;  // the 13 dropped bits
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half += 1;  // may carry into exponent: fine
    return F16{static_cast<uint16_t>(sign | half)};
  }
  if (exponent < -25) return F16{sign};  // below half the smallest subnormal: zero
  // Subnormal f16: value = m * 2^-24, m in [0, 1023]. Shift the full 24-bit significand.
  uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  int shift = -exponent - 14 + 13;  // 14..24
  uint32_t half = significand >> shift;
  uint32_t rest = significand & ((1u << shift) - 1u);
  uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) half += 1;
  return F16{static_cast<uint16_t>(sign | half)};
}

float f16_to_f32(F16 value) {
  uint32_t sign = static_cast<uint32_t>(value.bits & 0x8000u) << 16;
  uint32_t exponent = (value.bits >> 10) & 0x1fu;
  uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return f32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return f32_from_bits(sign);
  // Subnormal: normalize.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return f32_from_bits(sign | (static_cast<uint32_t>(113 - shift) << 23) | (mantissa << 13));
}

}  // namespace petaring
