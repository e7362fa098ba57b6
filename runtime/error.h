// Errors that cross layer boundaries.
//
// Two kinds of failure exist in petaring:
//   * bugs and broken preconditions: the PR_CHECK macros in check.h, which print the
//     values compared and file:line, and throw an Error of kind kInternal;
//   * faults the caller can act on (bad recipe, missing file, out of memory, dead
//     peer, ...): an Error with a kind and a message that says what to do next.
// Only the top of a rank, a worker or the coordinator catches; the CLI turns an Error
// into one readable line and a non-zero exit code (exit_code()).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace petaring {

enum class ErrorKind {
  kInvalidArgument,  // the input is wrong (recipe, flag, file contents)
  kNotFound,         // a file, device, key or peer does not exist
  kOutOfMemory,      // a device or host allocation failed
  kDisconnected,     // a peer or connection went away
  kTimeout,          // no progress within the allowed time
  kUnimplemented,    // the request is valid but not supported (yet) here
  kPermissionDenied, // the OS refused (file modes, /dev nodes)
  kFailedPrecondition,  // the system is not in a state to do this
  kInternal,         // a bug in petaring (failed PR_CHECK)
};

std::string_view error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message)
      : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  // Process exit code for the CLI: 2 for bad input, 1 otherwise.
  int exit_code() const;

 private:
  ErrorKind kind_;
};

// Concatenates anything printable with operator<< into one string.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// Builds and throws an Error: PR_FAIL(kNotFound, "no file ", path, "; install X").
#define PR_FAIL(kind, ...) \
  throw ::petaring::Error(::petaring::ErrorKind::kind, ::petaring::str_cat(__VA_ARGS__))

}  // namespace petaring
