// Pool clients: petaring submit RECIPE [--gpus N] [--priority P] [--tenant T], jobs,
// job ID, cancel ID, nodes, ledger. Each finds the coordinator by --coordinator and
// --secret-file (or PETARING_COORDINATOR, PETARING_SECRET_FILE); tables for people,
// --json for scripts.
#include <cstdio>
#include <ctime>
#include <memory>

#include "cli/commands.h"
#include "cluster/client.h"
#include "runtime/error.h"

namespace petaring::cli {
namespace {

using nlohmann::json;

struct ClientArgs {
  std::string coordinator;
  std::string secret_file;
  bool json_output = false;
  std::string recipe;
  uint32_t gpus = 1;
  uint32_t max_gpus = 0;
  int32_t priority = 0;
  std::string tenant = "default";
  int64_t id = 0;
  int64_t timeout_ms = 30000;
};

cluster::PoolClient connect(const ClientArgs& args) {
  cluster::PoolAddress address = cluster::resolve_pool_address(args.coordinator, args.secret_file);
  address.timeout = std::chrono::milliseconds(args.timeout_ms);
  return cluster::PoolClient(address);
}

// Prints rows under headers, each column as wide as its widest cell.
void print_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(headers.size());
  for (size_t c = 0; c < headers.size(); ++c) width[c] = headers[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  };
  print_row(headers);
  for (const auto& row : rows) print_row(row);
}

std::string text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "-";
  return value.dump();
}

std::string metrics_summary(const json& metrics) {
  if (!metrics.is_object()) return "-";
  std::string out;
  for (const char* key : {"event", "step", "steps", "epoch", "loss", "test_accuracy"}) {
    if (metrics.contains(key)) out += str_cat(out.empty() ? "" : " ", key, "=", metrics[key].dump());
  }
  return out.empty() ? metrics.dump() : out;
}

int print_jobs(const ClientArgs& args, const json& jobs) {
  if (args.json_output) {
    for (const auto& job : jobs) std::printf("%s\n", job.dump().c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& j : jobs) {
    rows.push_back({text(j["id"]), text(j["name"]), text(j["tenant"]), text(j["priority"]), text(j["gpus"]),
                    text(j["state"]), text(j["attempt"]), j["placement"].get<std::string>().empty() ? "-" : text(j["placement"]),
                    j["reason"].get<std::string>().empty() ? metrics_summary(j["last_metrics"]) : text(j["reason"])});
  }
  print_table({"ID", "NAME", "TENANT", "PRIO", "GPUS", "STATE", "ATTEMPT", "PLACEMENT", "REASON / METRICS"}, rows);
  return 0;
}

int run_nodes(const ClientArgs& args) {
  json nodes = connect(args).nodes();
  if (args.json_output) {
    for (const auto& n : nodes) std::printf("%s\n", n.dump().c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : nodes) {
    rows.push_back({text(n["id"]), text(n["name"]), text(n["state"]), text(n["devices"]), text(n["busy"])});
  }
  print_table({"ID", "NAME", "STATE", "GPUS", "BUSY"}, rows);
  return 0;
}

int run_ledger(const ClientArgs& args) {
  json ledger = connect(args).ledger();
  if (args.json_output) {
    for (const auto& e : ledger) std::printf("%s\n", e.dump().c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : ledger) {
    char seconds[32], flops[32];
    std::snprintf(seconds, sizeof(seconds), "%.1f", e["gpu_seconds"].get<double>());
    std::snprintf(flops, sizeof(flops), "%.3g", e["flops"].get<double>());
    rows.push_back(
        {text(e["id"]), text(e["job"]), text(e["attempt"]), text(e["tenant"]), text(e["node"]), seconds, flops});
  }
  print_table({"ID", "JOB", "ATTEMPT", "TENANT", "NODE", "GPU_SECONDS", "EST_FLOPS"}, rows);
  return 0;
}

void add_pool_options(CLI::App* sub, ClientArgs* args) {
  sub->add_option("--coordinator", args->coordinator, "host:port (or PETARING_COORDINATOR)");
  sub->add_option("--secret-file", args->secret_file, "pool secret file (or PETARING_SECRET_FILE)");
  sub->add_flag("--json", args->json_output, "one JSON object per line");
  sub->add_option("--timeout-ms", args->timeout_ms, "give up when the coordinator does not answer in time (0 = never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

}  // namespace

void register_pool_clients(CLI::App& app, CommandTable& table) {
  auto args = std::make_shared<ClientArgs>();
  CLI::App* submit = app.add_subcommand("submit", "submit a recipe to a pool");
  submit->add_option("recipe", args->recipe, "recipe YAML file")->required();
  submit->add_option("--gpus", args->gpus, "GPUs (ranks) the job needs, all at once")->capture_default_str();
  submit->add_option("--max-gpus", args->max_gpus,
                     "elastic job: runs on any count from --gpus up to this (re-placed, maybe smaller, "
                     "after a reclaim); the recipe must accept any of these world sizes");
  submit->add_option("--priority", args->priority, "higher runs first")->capture_default_str();
  submit->add_option("--tenant", args->tenant, "who is accounted for the GPU-seconds")->capture_default_str();
  add_pool_options(submit, args.get());
  table.entries.emplace_back(submit, [args] {
    int64_t id = connect(*args).submit_file(args->recipe, args->gpus, args->priority, args->tenant, args->max_gpus);
    if (args->json_output) {
      std::printf("%s\n", json{{"id", id}}.dump().c_str());
    } else {
      std::printf("submitted job %lld\n", static_cast<long long>(id));
    }
    return 0;
  });

  CLI::App* jobs = app.add_subcommand("jobs", "list a pool's jobs");
  add_pool_options(jobs, args.get());
  table.entries.emplace_back(jobs, [args] { return print_jobs(*args, connect(*args).jobs()); });

  CLI::App* job = app.add_subcommand("job", "one job: state, placement, last metrics");
  job->add_option("id", args->id, "job id")->required();
  add_pool_options(job, args.get());
  table.entries.emplace_back(job, [args] {
    json j = connect(*args).job(args->id);
    if (args->json_output) {
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    for (const char* key : {"id", "name", "tenant", "priority", "gpus", "state", "attempt", "placement", "reason"}) {
      std::printf("%-12s %s\n", key, text(j[key]).c_str());
    }
    std::printf("%-12s %s\n", "last_metrics", text(j["last_metrics"]).c_str());
    return 0;
  });

  CLI::App* cancel = app.add_subcommand("cancel", "cancel a pool job");
  cancel->add_option("id", args->id, "job id")->required();
  add_pool_options(cancel, args.get());
  table.entries.emplace_back(cancel, [args] {
    connect(*args).cancel(args->id);
    std::printf("cancelled job %lld\n", static_cast<long long>(args->id));
    return 0;
  });

  CLI::App* nodes = app.add_subcommand("nodes", "list a pool's nodes");
  add_pool_options(nodes, args.get());
  table.entries.emplace_back(nodes, [args] { return run_nodes(*args); });

  CLI::App* ledger = app.add_subcommand("ledger", "GPU-seconds delivered, per job attempt and node");
  add_pool_options(ledger, args.get());
  table.entries.emplace_back(ledger, [args] { return run_ledger(*args); });
}

}  // namespace petaring::cli
