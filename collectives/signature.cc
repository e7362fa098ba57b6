#include "collectives/signature.h"

#include <memory>
#include <tuple>

#include "runtime/error.h"

namespace petaring {
namespace {

std::string_view kind_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllreduce: return "allreduce";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kBarrier: return "barrier";
    case CollectiveKind::kReduceScatter: return "reduce_scatter";
    case CollectiveKind::kAllgather: return "allgather";
  }
  return "?";
}

// A total order on signatures (any fixed order will do: only min and max matter).
auto key(const CollectiveSignature& s) {
  return std::make_tuple(s.sequence, static_cast<int>(s.kind), s.count, static_cast<int>(s.op),
                         static_cast<int>(s.dtype), s.root);
}

// What travels: plain bytes, the same layout on every rank (one binary per job).
struct Record {
  CollectiveSignature low;   // smallest signature seen
  CollectiveSignature high;  // largest signature seen
  int32_t low_rank = 0;      // lowest rank holding `low`
  int32_t high_rank = 0;     // lowest rank holding `high`
};

// Merging is idempotent, commutative and associative, so a rank may hear of another rank
// twice in the dissemination and the result is the same on every rank.
void merge(Record& into, const Record& other) {
  auto low_key = [](const Record& r) { return std::make_tuple(key(r.low), r.low_rank); };
  auto high_key = [](const Record& r) { return std::make_tuple(key(r.high), -r.high_rank); };
  if (low_key(other) < low_key(into)) {
    into.low = other.low;
    into.low_rank = other.low_rank;
  }
  if (high_key(other) > high_key(into)) {
    into.high = other.high;
    into.high_rank = other.high_rank;
  }
}

}  // namespace

std::string describe(const CollectiveSignature& s) {
  std::string text = str_cat(kind_name(s.kind), " #", s.sequence, " (");
  switch (s.kind) {
    case CollectiveKind::kAllreduce:
    case CollectiveKind::kReduceScatter:
      return str_cat(text, "count ", s.count, ", ", dtype_name(s.dtype), ", ", reduce_op_name(s.op),
                     ")");
    case CollectiveKind::kAllgather:
      return str_cat(text, "count ", s.count, ", ", dtype_name(s.dtype), ")");
    case CollectiveKind::kBroadcast:
      return str_cat(text, s.count, " bytes, root ", s.root, ")");
    case CollectiveKind::kBarrier:
      return str_cat(kind_name(s.kind), " #", s.sequence);
  }
  return text + ")";
}

void check_signatures(Transport& transport, const CollectiveSignature& mine,
                      std::chrono::milliseconds timeout) {
  const int n = transport.size(), r = transport.rank();
  if (n == 1) return;
  Record record;
  record.low = record.high = mine;
  record.low_rank = record.high_rank = r;
  for (int distance = 1; distance < n; distance *= 2) {
    Record outgoing = record, incoming;
    std::unique_ptr<Request> receive =
        transport.irecv((r - distance + n) % n, &incoming, sizeof(incoming), kSignatureTag);
    std::unique_ptr<Request> send =
        transport.isend((r + distance) % n, &outgoing, sizeof(outgoing), kSignatureTag);
    receive->wait(timeout);
    send->wait(timeout);
    merge(record, incoming);
  }
  if (record.low == record.high) return;
  PR_FAIL(kFailedPrecondition, "ranks disagree on collective call #", mine.sequence,
          " (seen from rank ", r, "): rank ", record.low_rank, " called ", describe(record.low),
          " but rank ", record.high_rank, " called ", describe(record.high),
          "; every rank must make the same collective calls, in the same order, with the same "
          "counts, dtypes, ops and roots");
}

}  // namespace petaring
