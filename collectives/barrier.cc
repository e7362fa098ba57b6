#include "collectives/barrier.h"

#include <memory>

namespace petaring {

void dissemination_barrier(Transport& transport, const BarrierOptions& options) {
  const int n = transport.size(), r = transport.rank();
  for (int distance = 1; distance < n; distance *= 2) {
    char token_out = 1, token_in = 0;
    std::unique_ptr<Request> receive =
        transport.irecv((r - distance + n) % n, &token_in, 1, options.tag);
    std::unique_ptr<Request> send = transport.isend((r + distance) % n, &token_out, 1, options.tag);
    receive->wait(options.timeout);
    send->wait(options.timeout);
  }
}

}  // namespace petaring
