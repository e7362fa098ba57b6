#include "cluster/client.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cluster/auth.h"
#include "cluster/connection.h"
#include "runtime/error.h"
#include "trainer/recipe.h"

namespace petaring::cluster {
namespace {

nlohmann::json job_json(wire::JobInfo::Reader j) {
  nlohmann::json out = {{"id", j.getId()}, {"name", std::string(j.getName())}, {"tenant", std::string(j.getTenant())},
                        {"priority", j.getPriority()}, {"gpus", j.getGpus()},
                        {"min_gpus", j.getMinGpus()}, {"max_gpus", j.getMaxGpus()}, {"state", std::string(j.getState())},
                        {"attempt", j.getAttempt()}, {"reason", std::string(j.getReason())},
                        {"placement", std::string(j.getPlacement())}, {"submitted_ms", j.getSubmittedMs()}};
  std::string metrics = j.getLastMetrics();
  out["last_metrics"] = metrics.empty() ? nlohmann::json(nullptr)
                                        : nlohmann::json::parse(metrics, nullptr, /*allow_exceptions=*/false);
  return out;
}

}  // namespace

PoolAddress resolve_pool_address(const std::string& coordinator_flag, const std::string& secret_file_flag) {
  PoolAddress address;
  address.coordinator = coordinator_flag;
  if (address.coordinator.empty() && std::getenv("PETARING_COORDINATOR")) {
    address.coordinator = std::getenv("PETARING_COORDINATOR");
  }
  if (address.coordinator.empty()) {
    PR_FAIL(kInvalidArgument, "no coordinator: pass --coordinator HOST:PORT or set PETARING_COORDINATOR");
  }
  std::string secret_file = secret_file_flag;
  if (secret_file.empty() && std::getenv("PETARING_SECRET_FILE")) secret_file = std::getenv("PETARING_SECRET_FILE");
  if (secret_file.empty()) {
    PR_FAIL(kInvalidArgument, "no pool secret: pass --secret-file FILE or set PETARING_SECRET_FILE");
  }
  address.secret = read_secret_file(secret_file);
  return address;
}

PoolClient::PoolClient(const PoolAddress& address) {
  ConnectOptions options;
  options.address = address.coordinator;
  options.role = wire::Role::CLIENT;
  options.name = "client";
  options.key = address.secret;
  options.connect_timeout = std::chrono::milliseconds(3000);
  options.read_timeout = address.timeout;
  connection_ = std::make_unique<Connection>(options);
}

PoolClient::~PoolClient() = default;

int64_t PoolClient::submit_file(const std::string& recipe_path, uint32_t gpus, int32_t priority,
                                const std::string& tenant, uint32_t max_gpus) {
  load_recipe(recipe_path);  // the errors `petaring train` gives, before anything is sent
  std::ifstream in(recipe_path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return submit_text(text.str(), std::filesystem::path(recipe_path).filename().string(), gpus, priority, tenant,
                     max_gpus);
}

int64_t PoolClient::submit_text(const std::string& recipe_yaml, const std::string& name, uint32_t gpus,
                                int32_t priority, const std::string& tenant, uint32_t max_gpus) {
  capnp::MallocMessageBuilder message;
  auto submit = message.initRoot<wire::Envelope>().initSubmit();
  submit.setRecipeYaml(recipe_yaml);
  submit.setRecipeName(name);
  submit.setGpus(gpus);
  submit.setPriority(priority);
  submit.setTenant(tenant);
  submit.setMaxGpus(max_gpus);
  return connection_->call(message)->envelope().getSubmitted();
}

nlohmann::json PoolClient::jobs() {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setListJobs();
  auto reply = connection_->call(message);
  nlohmann::json out = nlohmann::json::array();
  for (auto j : reply->envelope().getJobs()) out.push_back(job_json(j));
  return out;
}

nlohmann::json PoolClient::job(int64_t id) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetJob(id);
  return job_json(connection_->call(message)->envelope().getJob());
}

void PoolClient::cancel(int64_t id) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setCancel(id);
  connection_->call(message);
}

nlohmann::json PoolClient::nodes() {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setListNodes();
  auto reply = connection_->call(message);
  nlohmann::json out = nlohmann::json::array();
  for (auto n : reply->envelope().getNodes()) {
    out.push_back({{"id", n.getId()}, {"name", std::string(n.getName())}, {"state", std::string(n.getState())},
                   {"devices", n.getDevices()}, {"busy", n.getBusy()}, {"last_heartbeat_ms", n.getLastHeartbeatMs()}});
  }
  return out;
}

nlohmann::json PoolClient::ledger() {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setGetLedger();
  auto reply = connection_->call(message);
  nlohmann::json out = nlohmann::json::array();
  for (auto e : reply->envelope().getLedger()) {
    out.push_back({{"id", e.getId()}, {"job", e.getJobId()}, {"attempt", e.getAttempt()},
                   {"tenant", std::string(e.getTenant())}, {"node", std::string(e.getNode())},
                   {"gpu_seconds", e.getGpuSeconds()}, {"flops", e.getFlops()}, {"recorded_ms", e.getRecordedMs()}});
  }
  return out;
}

void PoolClient::reclaim(const std::string& node_name) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setReclaim(node_name);
  connection_->call(message);
}

}  // namespace petaring::cluster
