#include "collectives/broadcast.h"

#include <algorithm>
#include <deque>
#include <memory>

#include "runtime/check.h"

namespace petaring {
namespace {

constexpr size_t kMaxSendsInFlight = 8;

}  // namespace

void pipeline_broadcast(Transport& transport, void* data, size_t bytes, int root,
                        const BroadcastOptions& options) {
  const int n = transport.size(), r = transport.rank();
  PR_CHECK(root >= 0 && root < n) << "broadcast root " << root << " outside a world of " << n;
  if (n == 1 || bytes == 0) return;
  const int position = (r - root + n) % n;  // 0 at the root, n - 1 at the chain's end
  const int left = (r + n - 1) % n, right = (r + 1) % n;
  const bool receives = position > 0, forwards = position < n - 1;
  const size_t segment_bytes = std::max<size_t>(1, options.segment_bytes);
  const size_t segments = (bytes + segment_bytes - 1) / segment_bytes;
  char* base = static_cast<char*>(data);
  auto segment_size = [&](size_t k) { return std::min(segment_bytes, bytes - k * segment_bytes); };
  auto post_receive = [&](size_t k) -> std::unique_ptr<Request> {
    if (!receives || k >= segments) return nullptr;
    return transport.irecv(left, base + k * segment_bytes, segment_size(k), options.tag);
  };

  std::deque<std::unique_ptr<Request>> sends;
  std::unique_ptr<Request> receiving = post_receive(0);
  for (size_t k = 0; k < segments; ++k) {
    std::unique_ptr<Request> next = post_receive(k + 1);
    if (receiving) receiving->wait(options.timeout);
    receiving = std::move(next);
    if (!forwards) continue;
    if (sends.size() >= kMaxSendsInFlight) {
      sends.front()->wait(options.timeout);
      sends.pop_front();
    }
    sends.push_back(transport.isend(right, base + k * segment_bytes, segment_size(k), options.tag));
  }
  for (auto& send : sends) send->wait(options.timeout);
}

}  // namespace petaring
