#include "runtime/error.h"

namespace petaring {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kNotFound: return "not found";
    case ErrorKind::kOutOfMemory: return "out of memory";
    case ErrorKind::kDisconnected: return "disconnected";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kUnimplemented: return "unimplemented";
    case ErrorKind::kPermissionDenied: return "permission denied";
    case ErrorKind::kFailedPrecondition: return "failed precondition";
    case ErrorKind::kInternal: return "internal error";
  }
  return "unknown error";
}

int Error::exit_code() const {
  switch (kind_) {
    case ErrorKind::kInvalidArgument:
    case ErrorKind::kNotFound:
      return 2;
    default:
      return 1;
  }
}

}  // namespace petaring
