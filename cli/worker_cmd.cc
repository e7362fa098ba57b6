// petaring worker --coordinator ADDR --secret-file F --devices cpu:4 [--name N] [--workdir D]
// petaring worker reclaim [--node N]      the owner takes the node's GPUs back
// petaring pool-rank -- COMMAND...         (started by a worker) join the job, exec COMMAND
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cluster/client.h"
#include "cluster/rank_store.h"
#include "cluster/worker.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::cli {
namespace {

struct WorkerArgs {
  std::string coordinator;
  std::string secret_file;
  std::string devices = "cpu:2";
  std::string name;
  std::string workdir = "petaring-work";
  int64_t heartbeat_ms = 1000;
  CLI::App* reclaim = nullptr;
  std::string reclaim_node;
};

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

int run_worker(const WorkerArgs& args) {
  cluster::PoolAddress address = cluster::resolve_pool_address(args.coordinator, args.secret_file);
  if (args.reclaim->parsed()) {
    std::string node = args.reclaim_node.empty() ? (args.name.empty() ? host_name() : args.name) : args.reclaim_node;
    cluster::PoolClient(address).reclaim(node);
    std::printf("node %s reclaimed: its jobs move elsewhere and its worker leaves the pool\n", node.c_str());
    return 0;
  }
  cluster::WorkerOptions options;
  options.coordinator = address.coordinator;
  options.secret = address.secret;
  options.devices = args.devices;
  options.name = args.name;
  options.workdir = args.workdir;
  options.heartbeat_interval = std::chrono::milliseconds(args.heartbeat_ms);
  // SIGINT/SIGTERM: stop the ranks, then leave.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  cluster::Worker worker(options);
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&set, &signal);
    if (signal == SIGTERM || signal == SIGINT) worker.request_stop();
  });
  waiter.detach();
  worker.run();
  return 0;
}

struct PoolRankArgs {
  std::vector<std::string> command;
};

int run_pool_rank(const PoolRankArgs& args) {
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    if (!value) PR_FAIL(kInvalidArgument, name, " is not set; `petaring pool-rank` is started by a worker");
    return std::string(value);
  };
  // Fails fast (a clear error in the rank's log) on a wrong token or an ended attempt.
  std::string coordinator = env("PETARING_COORDINATOR");
  cluster::join_job(coordinator, std::stoll(env("PETARING_JOB_ID")),
                    static_cast<uint32_t>(std::stoul(env("PETARING_JOB_ATTEMPT"))),
                    cluster::from_hex(env("PETARING_JOB_TOKEN")));
  // The rank meets its peers through the coordinator with the same token (rank_store.h).
  std::string store = "pool://" + coordinator;
  ::setenv("PETARING_STORE", store.c_str(), 1);
  if (args.command.empty()) PR_FAIL(kInvalidArgument, "pool-rank: no command after --");
  std::vector<char*> argv;
  for (const auto& a : args.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  PR_FAIL(kNotFound, "pool-rank: cannot run ", args.command[0], ": ", std::strerror(errno));
}

}  // namespace

void register_worker(CLI::App& app, CommandTable& table) {
  cluster::register_pool_store_scheme();  // PETARING_STORE=pool://... in a pool's ranks
  auto args = std::make_shared<WorkerArgs>();
  CLI::App* sub = app.add_subcommand("worker", "lend this node's devices to a pool");
  sub->add_option("--coordinator", args->coordinator, "host:port (or PETARING_COORDINATOR)");
  sub->add_option("--secret-file", args->secret_file, "pool secret file (or PETARING_SECRET_FILE)");
  sub->add_option("--devices", args->devices, "devices to lend, KIND:COUNT (virtual GPUs: cpu:N)")->capture_default_str();
  sub->add_option("--name", args->name, "node name (default: host name)");
  sub->add_option("--workdir", args->workdir, "folder for the jobs' working directories")->capture_default_str();
  sub->add_option("--heartbeat-ms", args->heartbeat_ms, "milliseconds between heartbeats")->capture_default_str();
  args->reclaim = sub->add_subcommand("reclaim", "take this node's GPUs back: its jobs move elsewhere");
  args->reclaim->add_option("--node", args->reclaim_node, "node name (default: --name, else host name)");
  sub->require_subcommand(0, 1);
  table.entries.emplace_back(sub, [args] { return run_worker(*args); });

  auto rank_args = std::make_shared<PoolRankArgs>();
  CLI::App* rank = app.add_subcommand("pool-rank", "(started by a worker) join a pool job, then run its rank");
  rank->add_option("command", rank_args->command, "the rank's command")->required();
  rank->group("");  // hidden from --help
  table.entries.emplace_back(rank, [rank_args] { return run_pool_rank(*rank_args); });
}

}  // namespace petaring::cli
