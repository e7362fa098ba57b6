#include "collectives/reduce.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

// Combiners: one call per element pair, inlined into the loops below.
struct Sum {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {  // wraps instead of overflowing (no UB)
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return a + b;
    }
  }
};
// `a != a` is true only for NaN: a NaN in either operand comes out.
struct Max {
  template <typename T>
  T operator()(T a, T b) const { return (a != a || a > b) ? a : b; }
};
struct Min {
  template <typename T>
  T operator()(T a, T b) const { return (a != a || a < b) ? a : b; }
};

template <typename T, typename Combine>
void combine_loop(T* __restrict dst, const T* __restrict src, size_t count, Combine combine) {
  for (size_t i = 0; i < count; ++i) dst[i] = combine(dst[i], src[i]);
}

// 16-bit floats: widen a block to f32, combine, round back. The block keeps the f32
// copies in registers or L1 and lets the widening and narrowing loops vectorize.
struct BF16Codec {
  static float widen(uint16_t bits) { return bf16_to_f32(BF16{bits}); }
  static uint16_t narrow(float value) { return bf16_from_f32(value).bits; }
};
struct F16Codec {
  static float widen(uint16_t bits) { return f16_to_f32(F16{bits}); }
  static uint16_t narrow(float value) { return f16_from_f32(value).bits; }
};

constexpr size_t kBlock = 256;

template <typename Codec, typename Combine>
void combine_half_loop(uint16_t* __restrict dst, const uint16_t* __restrict src, size_t count,
                       Combine combine) {
  float a[kBlock], b[kBlock];
  for (size_t start = 0; start < count; start += kBlock) {
    const size_t n = std::min(kBlock, count - start);
    for (size_t i = 0; i < n; ++i) a[i] = Codec::widen(dst[start + i]);
    for (size_t i = 0; i < n; ++i) b[i] = Codec::widen(src[start + i]);
    for (size_t i = 0; i < n; ++i) a[i] = combine(a[i], b[i]);
    for (size_t i = 0; i < n; ++i) dst[start + i] = Codec::narrow(a[i]);
  }
}

template <typename Combine>
void reduce_typed(void* dst, const void* src, size_t count, DType dtype, Combine combine) {
  switch (dtype) {
    case DType::kF32:
      return combine_loop(static_cast<float*>(dst), static_cast<const float*>(src), count, combine);
    case DType::kI32:
      return combine_loop(static_cast<int32_t*>(dst), static_cast<const int32_t*>(src), count,
                          combine);
    case DType::kI64:
      return combine_loop(static_cast<int64_t*>(dst), static_cast<const int64_t*>(src), count,
                          combine);
    case DType::kBF16:
      return combine_half_loop<BF16Codec>(static_cast<uint16_t*>(dst),
                                          static_cast<const uint16_t*>(src), count, combine);
    case DType::kF16:
      return combine_half_loop<F16Codec>(static_cast<uint16_t*>(dst),
                                         static_cast<const uint16_t*>(src), count, combine);
    case DType::kU8:
      break;
  }
  PR_FAIL(kUnimplemented, "reduction of ", dtype_name(dtype), " values is not supported");
}

template <typename Codec>
void divide_half(uint16_t* data, size_t count, float divisor) {
  for (size_t i = 0; i < count; ++i) data[i] = Codec::narrow(Codec::widen(data[i]) / divisor);
}

}  // namespace

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAverage: return "average";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

void validate_reduction(DType dtype, ReduceOp op, std::string_view what) {
  const bool integer = dtype == DType::kI32 || dtype == DType::kI64;
  if (integer && op == ReduceOp::kAverage) {
    PR_FAIL(kInvalidArgument, what, " with op average over ", dtype_name(dtype),
            " values: an integer mean would have to round and no rounding suits every caller; "
            "reduce with op sum and divide by the world size yourself, or use a float dtype");
  }
  if (dtype == DType::kU8) {
    PR_FAIL(kUnimplemented, what, " over u8 values is not supported (sums would overflow at "
            "256); widen the buffer to i32 first");
  }
}

void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op) {
  if (count == 0) return;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAverage: return reduce_typed(dst, src, count, dtype, Sum{});
    case ReduceOp::kMax: return reduce_typed(dst, src, count, dtype, Max{});
    case ReduceOp::kMin: return reduce_typed(dst, src, count, dtype, Min{});
  }
}

void average_in_place(void* data, size_t count, DType dtype, int n) {
  PR_CHECK_GE(n, 1) << "average over no ranks";
  const float divisor = static_cast<float>(n);
  switch (dtype) {
    case DType::kF32: {
      float* values = static_cast<float*>(data);
      for (size_t i = 0; i < count; ++i) values[i] /= divisor;
      return;
    }
    case DType::kBF16: return divide_half<BF16Codec>(static_cast<uint16_t*>(data), count, divisor);
    case DType::kF16: return divide_half<F16Codec>(static_cast<uint16_t*>(data), count, divisor);
    default: break;
  }
  PR_CHECK(false) << "average of " << dtype_name(dtype) << " values reached the ring";
}

}  // namespace petaring
