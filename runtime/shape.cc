#include "runtime/shape.h"

#include <sstream>

#include "runtime/check.h"

namespace petaring {

Shape::Shape(std::initializer_list<int64_t> dims) {
  PR_CHECK_LE(dims.size(), static_cast<size_t>(kMaxDims));
  for (int64_t d : dims) {
    PR_CHECK_GE(d, 0) << "negative extent in shape";
    dims_[static_cast<size_t>(rank_++)] = d;
  }
}

int64_t Shape::dim(int i) const {
  if (i < 0) i += rank_;
  PR_CHECK(i >= 0 && i < rank_) << "dimension " << i << " of shape " << to_string();
  return dims_[static_cast<size_t>(i)];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[static_cast<size_t>(i)] != other.dims_[static_cast<size_t>(i)]) return false;
  }
  return true;
}

std::string Shape::to_string() const {
  std::ostringstream out;
  out << *this;
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Shape& shape) {
  out << '(';
  for (int i = 0; i < shape.rank(); ++i) out << (i ? ", " : "") << shape[i];
  return out << ')';
}

}  // namespace petaring
