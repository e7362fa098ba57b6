// PoolClient: the calls behind `petaring submit|jobs|job|cancel|nodes|ledger` and
// `petaring worker reclaim`. Each call is one authenticated request to the coordinator;
// results come back as JSON values (the CLI prints them as tables or, with --json, as is).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace petaring::cluster {

class Connection;

struct PoolAddress {
  std::string coordinator;  // host:port
  std::string secret;       // the pool secret's bytes
  std::chrono::milliseconds timeout{30000};  // per reply; 0 = wait forever
};

// --coordinator / --secret-file, else PETARING_COORDINATOR / PETARING_SECRET_FILE. Throws
// kInvalidArgument naming the flag and the variable when neither gives a value.
PoolAddress resolve_pool_address(const std::string& coordinator_flag, const std::string& secret_file_flag);

class PoolClient {
 public:
  explicit PoolClient(const PoolAddress& address);
  ~PoolClient();

  // Validates the recipe file as `petaring train` does (same errors), then submits its text.
  // max_gpus > gpus submits an elastic job (any count in [gpus, max_gpus]); 0 = rigid.
  int64_t submit_file(const std::string& recipe_path, uint32_t gpus, int32_t priority, const std::string& tenant,
                      uint32_t max_gpus = 0);
  int64_t submit_text(const std::string& recipe_yaml, const std::string& name, uint32_t gpus, int32_t priority,
                      const std::string& tenant, uint32_t max_gpus = 0);
  nlohmann::json jobs();
  nlohmann::json job(int64_t id);
  void cancel(int64_t id);
  nlohmann::json nodes();
  nlohmann::json ledger();
  void reclaim(const std::string& node_name);

 private:
  std::unique_ptr<Connection> connection_;
};

}  // namespace petaring::cluster
