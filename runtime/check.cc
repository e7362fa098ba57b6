#include "runtime/check.h"

#include <exception>

namespace petaring::detail {

CheckFailure::CheckFailure(const char* file, int line, const std::string& what) {
  out_ << file << ":" << line << ": " << what;
}

CheckFailure::~CheckFailure() noexcept(false) {
  // Never throw while another exception unwinds the stack: that would terminate.
  if (std::uncaught_exceptions() > 0) return;
  throw Error(ErrorKind::kInternal, out_.str());
}

}  // namespace petaring::detail
