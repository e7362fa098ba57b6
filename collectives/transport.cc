#include "collectives/transport.h"

#include <limits.h>
#include <unistd.h>

#include <vector>

#include "runtime/error.h"

namespace petaring {

std::string transport_aborted_message(int rank, int peer, const char* transport_name) {
  return str_cat("rank ", rank, ": the communicator was aborted while an operation with rank ",
                 peer, " was pending (", transport_name,
                 " transport); look for the error that made this rank abort");
}

std::string local_host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

namespace {

// Transport::irecv_reduce's default: a plain receive into a buffer of its own, combined
// into the destination once, by the wait or test that sees it complete.
class StagedReduceRequest : public Request {
 public:
  StagedReduceRequest(Transport& transport, int peer, void* data, size_t bytes, uint64_t tag,
                      DType dtype, ReduceOp op)
      : data_(data), staging_(bytes), dtype_(dtype), op_(op) {
    inner_ = transport.irecv(peer, staging_.data(), bytes, tag);
  }
  void wait(std::chrono::milliseconds timeout) override {
    inner_->wait(timeout);
    combine();
  }
  bool test() override {
    if (!inner_->test()) return false;
    combine();
    return true;
  }

 private:
  void combine() {
    if (combined_) return;
    combined_ = true;
    reduce_into(data_, staging_.data(), staging_.size() / dtype_size(dtype_), dtype_, op_);
  }

  void* data_;
  std::vector<char> staging_;
  DType dtype_;
  ReduceOp op_;
  bool combined_ = false;
  std::unique_ptr<Request> inner_;
};

}  // namespace

std::unique_ptr<Request> Transport::irecv_reduce(int peer, void* data, size_t bytes, uint64_t tag,
                                                 DType dtype, ReduceOp op) {
  return std::make_unique<StagedReduceRequest>(*this, peer, data, bytes, tag, dtype, op);
}

}  // namespace petaring
