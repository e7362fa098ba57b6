// Store: a small key-value table that every rank of a job can reach, used to find each
// other at start-up (addresses, counters). Not for bulk data.
//
// Implementations: TcpStore (tcp_store.h; served by the launcher or by rank 0 over TCP)
// and FileStore (file_store.h; a shared folder, for tests). Values are byte strings
// (std::string may hold any bytes). All calls are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace petaring {

class Store {
 public:
  virtual ~Store() = default;
  // Sets `key` to `value`, replacing any earlier value; visible to every client on return.
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Blocks until `key` exists and returns its value; throws kTimeout naming the key when it
  // does not appear within `timeout`.
  virtual std::string get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  // Atomically adds `delta` to the counter `key` (a missing key counts as 0) and returns
  // the new value. Counters are stored as decimal text, so get() reads them too.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
};

}  // namespace petaring
