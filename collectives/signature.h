// Signature check: do all ranks agree on what the next collective is?
//
// Every collective call of a Communicator carries a signature: its sequence number, the
// collective (allreduce, broadcast, ...), reduce op, dtype, element count and root. Before
// any data moves the ranks compare signatures, so that ranks which disagree (one rank
// passed another count, or called broadcast while the others called allreduce) all get
// a kFailedPrecondition error naming two disagreeing ranks and both their calls (the same
// two on every rank),
// instead of a hang, a timeout, or a silently wrong result.
//
// How: a dissemination allreduce of a 64-byte record (the smallest and the largest
// signature seen, with the lowest rank holding each). In round j (distance d = 2^j, while
// d < n) rank r sends its record to (r + d) mod n and merges the one from (r - d) mod n.
// After ceil(log2 n) rounds every rank holds the same record; the ranks disagree exactly
// when its smallest and largest signatures differ. Cost: ceil(log2 n) small messages of
// latency per collective, whatever the data size.
//
// The records travel on their own tag (kSignatureTag), not on the call's tag, so that the
// check still pairs up when ranks disagree on the sequence number itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "collectives/reduce.h"
#include "collectives/transport.h"
#include "runtime/dtype.h"

namespace petaring {

enum class CollectiveKind : uint8_t {
  kAllreduce,
  kBroadcast,
  kBarrier,
  kReduceScatter,
  kAllgather,
};

struct CollectiveSignature {
  uint64_t sequence = 0;
  uint64_t count = 0;  // elements (bytes for broadcast, 0 for barrier)
  CollectiveKind kind = CollectiveKind::kBarrier;
  ReduceOp op = ReduceOp::kSum;   // meaningful for reductions only
  DType dtype = DType::kU8;       // meaningful where the call has one
  int32_t root = -1;              // broadcast only

  bool operator==(const CollectiveSignature&) const = default;
};

// "allreduce #12 (count 1000, f32, sum)"
std::string describe(const CollectiveSignature& signature);

// The tag the check's messages carry; collectives' own tags (their sequence numbers) stay
// far below it.
inline constexpr uint64_t kSignatureTag = 0x7fff'fff0;

// Blocking. Returns when every rank of the transport's group passed an equal signature;
// otherwise every rank throws kFailedPrecondition naming the same two ranks and their
// calls. Waits are bounded by `timeout` (kTimeout names the silent peer).
void check_signatures(Transport& transport, const CollectiveSignature& mine,
                      std::chrono::milliseconds timeout);

}  // namespace petaring
