// The buffer rules the allreduce, reduce_scatter and allgather algorithms share (ring.h,
// reduce_scatter.h, allgather.h, direct.h), checked the same way by each. Internal to
// collectives/; a violation is a bug in the caller (PR_CHECK, kInternal).
#pragma once

#include <cstddef>
#include <cstring>

#include "runtime/check.h"

namespace petaring {

// allreduce: `bytes` > 0 in each; send == recv (in place) or no overlap at all.
inline void check_allreduce_buffers(const void* send, const void* recv, size_t bytes) {
  PR_CHECK(send != nullptr && recv != nullptr) << "allreduce of " << bytes << " bytes over a null buffer";
  const char* in = static_cast<const char*>(send);
  const char* out = static_cast<const char*>(recv);
  PR_CHECK(in == out || in + bytes <= out || out + bytes <= in)
      << "allreduce send and recv buffers overlap without being the same buffer";
}

// reduce_scatter: send holds n blocks of `block_bytes`, recv one; no overlap.
inline void check_reduce_scatter_buffers(const void* send, const void* recv, size_t block_bytes,
                                         int n) {
  PR_CHECK(send != nullptr && recv != nullptr)
      << "reduce_scatter of " << block_bytes << " bytes per rank over a null buffer";
  const char* in = static_cast<const char*>(send);
  const char* out = static_cast<const char*>(recv);
  PR_CHECK(in + block_bytes * static_cast<size_t>(n) <= out || out + block_bytes <= in)
      << "reduce_scatter recv buffer overlaps the send buffer";
}

// allgather: recv holds n blocks of `block_bytes`; send is rank r's block of recv (in
// place) or does not overlap recv.
inline void check_allgather_buffers(const void* send, const void* recv, size_t block_bytes, int n,
                                    int r) {
  PR_CHECK(send != nullptr && recv != nullptr)
      << "allgather of " << block_bytes << " bytes per rank over a null buffer";
  const char* in = static_cast<const char*>(send);
  const char* out = static_cast<const char*>(recv);
  PR_CHECK(in == out + static_cast<size_t>(r) * block_bytes || in + block_bytes <= out ||
           out + block_bytes * static_cast<size_t>(n) <= in)
      << "allgather send buffer overlaps recv without being rank " << r << "'s block";
}

// The start of every reduce_scatter algorithm: checks the buffers and, for one rank, copies
// its block (the whole call). True when the call is done.
inline bool reduce_scatter_alone(const void* send, void* recv, size_t block_bytes, int n) {
  check_reduce_scatter_buffers(send, recv, block_bytes, n);
  if (n > 1) return false;
  std::memcpy(recv, send, block_bytes);
  return true;
}

// The start of every allgather algorithm: checks the buffers and places rank r's own block
// (unless it is there already: in place). True when that was the whole call (one rank).
inline bool allgather_own_block(const void* send, void* recv, size_t block_bytes, int n, int r) {
  check_allgather_buffers(send, recv, block_bytes, n, r);
  char* own = static_cast<char*>(recv) + static_cast<size_t>(r) * block_bytes;
  if (send != own) std::memcpy(own, send, block_bytes);
  return n == 1;
}

}  // namespace petaring
