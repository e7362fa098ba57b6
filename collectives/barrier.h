// Dissemination barrier over a Transport.
//
// Terms: in round j (distance d = 2^j, while d < n) rank r sends a one-byte token to
// (r + d) mod n and waits for the token from (r - d) mod n. After ceil(log2 n) rounds
// every rank has heard, directly or through others, from every rank, so no rank leaves
// before all have arrived.
#pragma once

#include <chrono>
#include <cstdint>

#include "collectives/transport.h"

namespace petaring {

struct BarrierOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  uint64_t tag = 0;  // every message of this call carries it
};

// Blocks until every rank of the transport's group has called it (with the same tag).
void dissemination_barrier(Transport& transport, const BarrierOptions& options);

}  // namespace petaring
