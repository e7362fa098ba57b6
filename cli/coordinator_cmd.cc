// petaring coordinator --listen ADDR --state FILE.db --secret-file F
//
// Serves a pool until SIGINT or SIGTERM (cluster/coordinator.h).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "cluster/auth.h"
#include "cluster/coordinator.h"
#include "runtime/log.h"

namespace petaring::cli {
namespace {

struct CoordinatorArgs {
  std::string listen = "127.0.0.1:7070";
  std::string state;
  std::string secret_file;
  int64_t heartbeat_timeout_ms = 10000;
  uint32_t max_attempts = 4;
  std::string address_file;
  std::string shared_dir;
};

// Blocks SIGINT and SIGTERM in every thread started after this, and waits for one.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  int wait() {
    int signal = 0;
    sigwait(&set_, &signal);
    return signal;
  }

 private:
  sigset_t set_;
};

int run_coordinator(const CoordinatorArgs& args) {
  cluster::CoordinatorOptions options;
  options.listen = args.listen;
  options.state_path = args.state;
  options.secret = cluster::read_secret_file(args.secret_file);
  options.heartbeat_timeout = std::chrono::milliseconds(args.heartbeat_timeout_ms);
  options.max_attempts = args.max_attempts;
  options.shared_dir = args.shared_dir;
  StopSignals signals;
  cluster::Coordinator coordinator(options);
  if (!args.address_file.empty()) {  // written whole, then renamed: readers never see half
    std::string temp = args.address_file + ".tmp";
    std::ofstream(temp) << coordinator.address() << "\n";
    std::filesystem::rename(temp, args.address_file);
  }
  int signal = signals.wait();
  PR_LOG(kInfo) << "coordinator: stopping on signal " << signal;
  return 0;
}

}  // namespace

void register_coordinator(CLI::App& app, CommandTable& table) {
  auto args = std::make_shared<CoordinatorArgs>();
  CLI::App* sub = app.add_subcommand("coordinator", "serve a pool of lent GPUs (state in SQLite)");
  sub->add_option("--listen", args->listen, "host:port to serve on (port 0 picks one)")->capture_default_str();
  sub->add_option("--state", args->state, "the pool's SQLite state file (created when missing)")->required();
  sub->add_option("--secret-file", args->secret_file, "file holding the pool secret")->required();
  sub->add_option("--heartbeat-timeout-ms", args->heartbeat_timeout_ms,
                  "a node silent this long is lost and its jobs restart")->capture_default_str();
  sub->add_option("--max-attempts", args->max_attempts, "failed attempts (rank errors, lost nodes) per job before it fails; preemptions and reclaims do not count")->capture_default_str();
  sub->add_option("--shared-dir", args->shared_dir,
                  "absolute path of a filesystem every worker mounts at the same place; jobs checkpoint to "
                  "DIR/job-ID/checkpoints there, so a job re-placed on another host resumes (a recipe's absolute "
                  "checkpoint.dir wins)");
  sub->add_option("--address-file", args->address_file, "write the bound host:port here once serving");
  table.entries.emplace_back(sub, [args] { return run_coordinator(*args); });
}

}  // namespace petaring::cli
