#include "collectives/recursive_doubling.h"

#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/check.h"

namespace petaring {
namespace {

// Runs options.before_first_receive the first time it is called, then never again.
class Hook {
 public:
  explicit Hook(const RecursiveDoublingOptions& options) : hook_(options.before_first_receive) {}
  void operator()() {
    if (called_) return;
    called_ = true;
    if (hook_) hook_();
  }

 private:
  const std::function<void()>& hook_;
  bool called_ = false;
};

// Sends `data` to `peer` and receives the same number of bytes from it into `into`;
// returns when both are done. The send is posted first so that `hook` (the first time)
// runs while it travels.
void exchange(Transport& transport, int peer, const char* data, char* into, size_t bytes,
              const RecursiveDoublingOptions& options, Hook& hook) {
  std::unique_ptr<Request> sending = transport.isend(peer, data, bytes, options.tag);
  hook();
  std::unique_ptr<Request> receiving = transport.irecv(peer, into, bytes, options.tag);
  receiving->wait(options.timeout);
  sending->wait(options.timeout);
}

}  // namespace

int recursive_doubling_group(int n) {
  PR_CHECK_GE(n, 1) << "recursive doubling over no ranks";
  int p = 1;
  while (p <= n / 2) p *= 2;
  return p;
}

void recursive_doubling_allreduce(Transport& transport, const void* send, void* recv,
                                  size_t count, DType dtype, ReduceOp op,
                                  const RecursiveDoublingOptions& options) {
  Hook hook(options);
  try {
    validate_reduction(dtype, op, "allreduce");
  } catch (...) {
    hook();  // a disagreement among the ranks is the better error
    throw;
  }
  const int n = transport.size(), r = transport.rank();
  if (count == 0 || n == 1) hook();
  if (count == 0) return;
  PR_CHECK(send != nullptr && recv != nullptr)
      << "allreduce of " << count << " values over a null buffer";
  const size_t bytes = count * dtype_size(dtype);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  if (in != out) {
    PR_CHECK(in + bytes <= out || out + bytes <= in)
        << "allreduce send and recv buffers overlap without being the same buffer";
    std::memcpy(out, in, bytes);
  }
  if (n == 1) return;  // the sum, max, min or mean over one rank is its own data

  const int p = recursive_doubling_group(n);
  if (r >= p) {  // an extra rank: fold into rank r - p, then take its result
    std::unique_ptr<Request> folding = transport.isend(r - p, out, bytes, options.tag);
    hook();
    folding->wait(options.timeout);
    transport.irecv(r - p, out, bytes, options.tag)->wait(options.timeout);
    return;
  }
  std::vector<char> staging(bytes);
  if (r + p < n) {  // fold: own (lower rank) (op) the extra rank's block
    hook();  // nothing to send before the fold's receive
    transport.irecv(r + p, staging.data(), bytes, options.tag)->wait(options.timeout);
    reduce_into(out, staging.data(), count, dtype, op);
  }
  // `current` holds this rank's partial, `spare` receives the partner's; combining into
  // the lower rank's block keeps the order of the header on both ranks of a step.
  char* current = out;
  char* spare = staging.data();
  for (int distance = 1; distance < p; distance *= 2) {
    const int partner = r ^ distance;
    exchange(transport, partner, current, spare, bytes, options, hook);
    if (r < partner) {
      reduce_into(current, spare, count, dtype, op);
    } else {
      reduce_into(spare, current, count, dtype, op);
      std::swap(current, spare);
    }
  }
  if (current != out) std::memcpy(out, current, bytes);
  if (op == ReduceOp::kAverage) average_in_place(out, count, dtype, n);
  if (r + p < n) {  // unfold: the extra rank takes these bytes
    transport.isend(r + p, out, bytes, options.tag)->wait(options.timeout);
  }
}

}  // namespace petaring
