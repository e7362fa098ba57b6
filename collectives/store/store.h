// Store: a small key-value table that every rank of a job can reach, used to find each
// other at start-up (addresses, counters). Not for bulk data.
//
// Implementations: TcpStore (tcp_store.h; served by the launcher or by rank 0 over TCP),
// MpiStore (mpi_store.h; served by rank 0 over MPI, under mpirun) and FileStore
// (file_store.h; a shared folder, for tests). Values are byte strings
// (std::string may hold any bytes). All calls are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
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
  // This end's IP address towards the store's server, when the store has one: the
  // interface through which this host reaches it, a good address to advertise to other
  // ranks. "" when unknown.
  virtual std::string local_ip() const { return ""; }
};

// Opens the store a launcher names in PETARING_STORE. "host:port" is a TcpStore;
// "SCHEME://REST" goes to the opener a layer registered for SCHEME (the pool registers
// "pool": its ranks meet through the coordinator, proving their job token; see
// cluster/rank_store.h). Throws kInvalidArgument for a scheme nobody registered.
using StoreOpener = std::function<std::unique_ptr<Store>(const std::string& rest)>;
void register_store_scheme(const std::string& scheme, StoreOpener opener);
std::unique_ptr<Store> open_store(const std::string& address);

}  // namespace petaring
