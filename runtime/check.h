// Checks for bugs and broken preconditions. A failed check throws an Error of kind
// kInternal whose message holds file:line, the expression, the values compared and
// any streamed context:
//   PR_CHECK_EQ(a.size(), b.size()) << "while packing layer " << i;
//   -> "trainer/mlp.cc:42: check failed: a.size() == b.size() (14 vs 72) while packing layer 3"
// Never use checks for user input; raise an Error with a helpful kind instead.
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "runtime/error.h"

namespace petaring::detail {

// Collects the message; throws when the full expression ends.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const std::string& what);
  ~CheckFailure() noexcept(false);
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    out_ << value;
    return *this;
  }

 private:
  std::ostringstream out_;
};

template <typename A, typename B>
std::string compared(const A& a, const B& b) {
  std::ostringstream out;
  out << " (" << a << " vs " << b << ")";
  return out.str();
}

}  // namespace petaring::detail

#define PR_CHECK(cond)                                                          \
  if (cond) {                                                                   \
  } else                                                                        \
    ::petaring::detail::CheckFailure(__FILE__, __LINE__, "check failed: " #cond) \
        << " "

#define PR_CHECK_OP_(a, b, op)                                                   \
  if (auto pr_ab_ = std::make_pair((a), (b)); pr_ab_.first op pr_ab_.second) {   \
  } else                                                                         \
    ::petaring::detail::CheckFailure(                                            \
        __FILE__, __LINE__,                                                      \
        "check failed: " #a " " #op " " #b +                                     \
            ::petaring::detail::compared(pr_ab_.first, pr_ab_.second))           \
        << " "

#define PR_CHECK_EQ(a, b) PR_CHECK_OP_(a, b, ==)
#define PR_CHECK_NE(a, b) PR_CHECK_OP_(a, b, !=)
#define PR_CHECK_LT(a, b) PR_CHECK_OP_(a, b, <)
#define PR_CHECK_LE(a, b) PR_CHECK_OP_(a, b, <=)
#define PR_CHECK_GT(a, b) PR_CHECK_OP_(a, b, >)
#define PR_CHECK_GE(a, b) PR_CHECK_OP_(a, b, >=)
