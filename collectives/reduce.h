// Element-wise reduction: how the values of two ranks combine.
//
// Ops: kSum, kAverage (a sum whose owner divides by the world size once, at the end:
// reduce_into treats it as kSum and average_in_place finishes it), kMax, kMin.
//
// Dtypes and their arithmetic:
//   f32        IEEE single precision, one rounding per combine.
//   bf16, f16  "f32 accumulation", one combine at a time: both operands are widened to
//              f32 (exactly), combined in f32, and rounded back to nearest, ties to even,
//              with the converters of runtime/dtype.h. A ring therefore rounds once per
//              hop, not once per element at the end (see ring.h for the fixed order).
//              Max and min never round: the result is one of the inputs.
//   i32, i64   exact two's-complement arithmetic; sums wrap around on overflow.
//              kAverage is rejected (kInvalidArgument): an integer mean would have to
//              round, and no rounding is right for every caller; sum, then divide.
//   u8         not reducible (kUnimplemented); widen to i32 first.
// Max and min propagate NaN: a NaN in any rank's input gives a NaN.
#pragma once

#include <cstddef>
#include <string_view>

#include "runtime/dtype.h"

namespace petaring {

enum class ReduceOp { kSum, kAverage, kMax, kMin };

std::string_view reduce_op_name(ReduceOp op);  // "sum", "average", "max", "min"

// Throws kInvalidArgument (integer average) or kUnimplemented (u8) with a message that
// names `what` (e.g. "allreduce") and says what to do instead. Touches no data.
void validate_reduction(DType dtype, ReduceOp op, std::string_view what);

// dst[i] = dst[i] (op) src[i] for i < count; kAverage combines as kSum. The buffers hold
// `count` values of `dtype` and must not overlap. One dispatch per call; the loops are
// written to vectorize. The combination is commutative bit for bit, except for which NaN
// comes out when both operands are NaN.
void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op);

// data[i] = data[i] / n, for finishing kAverage: floats divide in f32 (bf16 and f16 are
// widened, divided and rounded back once). Integer dtypes are a bug (validate first).
void average_in_place(void* data, size_t count, DType dtype, int n);

}  // namespace petaring
