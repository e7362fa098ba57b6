// RankStore: how the ranks of a pool job meet. The coordinator serves each running job
// attempt a small key-value table (the Store of collectives/store/store.h); a rank
// reaches it over an ordinary pool connection, authenticated with its attempt's token
// (auth.h job_token), so only that attempt's ranks can read or write it, and a rank of an
// attempt that has ended is refused (kFailedPrecondition) instead of meeting stale peers.
// A get the table cannot answer yet is asked again after a short, growing pause (the
// coordinator never blocks on one rank), until the key appears or the timeout passes.
//
// A worker starts a rank with PETARING_STORE=pool://HOST:PORT (the coordinator) and
// PETARING_JOB_ID, PETARING_JOB_ATTEMPT, PETARING_JOB_TOKEN (hex); open_store() opens a
// RankStore for that text once register_pool_store_scheme() ran (the petaring program
// does it at start). Thread-safe: calls share one connection under a mutex.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "collectives/store/store.h"

namespace petaring::cluster {

class Connection;

class RankStore : public Store {
 public:
  // Connects and authenticates; throws kPermissionDenied when the coordinator refuses the
  // token (a wrong token, or one of another job or attempt).
  RankStore(const std::string& coordinator, int64_t job_id, uint32_t attempt, const std::string& token);
  ~RankStore() override;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  int64_t add(const std::string& key, int64_t delta) override;
  std::string local_ip() const override;

 private:
  std::mutex mu_;
  std::string coordinator_;
  int64_t job_id_;
  uint32_t attempt_;
  std::unique_ptr<Connection> connection_;
};

// Registers the "pool" scheme with open_store(): "pool://HOST:PORT" opens a RankStore
// for the job attempt named by PETARING_JOB_ID, PETARING_JOB_ATTEMPT and PETARING_JOB_TOKEN.
void register_pool_store_scheme();

}  // namespace petaring::cluster
