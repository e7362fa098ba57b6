// Per-thread scratch memory for the collective algorithms (internal to collectives/).
//
// The ring's staging buffers and the direct collectives' pieces are needed on every call;
// allocating them per call costs a zeroing pass and, above malloc's mmap threshold, a page
// fault per 4 KiB page on every call (1-3 % of a 4 MiB allreduce over tcp). A thread runs
// one collective at a time, so one buffer per thread, grown as needed and never shrunk,
// serves them all. The contents are garbage on entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace petaring {

// At least `bytes` of 64-byte aligned scratch, valid until the next call on this thread.
inline char* thread_scratch(size_t bytes) {
  struct Scratch {
    std::unique_ptr<char[]> owned;
    char* aligned = nullptr;
    size_t size = 0;
  };
  thread_local Scratch scratch;
  if (scratch.size < bytes) {
    scratch.owned.reset(new char[bytes + 64]);  // not value-initialized: no zeroing pass
    scratch.aligned = reinterpret_cast<char*>(
        (reinterpret_cast<uintptr_t>(scratch.owned.get()) + 63) / 64 * 64);
    scratch.size = bytes;
  }
  return scratch.aligned;
}

}  // namespace petaring
