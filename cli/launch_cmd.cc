// petaring launch -n N [--port P] [--grace S] -- COMMAND [ARGS...]
//
// Starts N ranks of COMMAND on this host without MPI, like `torchrun --nproc_per_node`.
// The launcher serves the job's TCP store (collectives/store/tcp_store.h) on PORT (default:
// any free port) and starts each rank with PETARING_RANK, PETARING_WORLD_SIZE,
// PETARING_LOCAL_RANK, PETARING_LOCAL_WORLD_SIZE and PETARING_STORE=127.0.0.1:PORT in its
// environment; make_world_communicator() (collectives/bootstrap.h) reads them. Ranks share
// the launcher's stdout and stderr. When a rank fails (non-zero exit or a signal) the
// launcher stops the others (SIGTERM, then SIGKILL after the grace period) and exits with
// that rank's code (128 + signal for a signal), naming the rank. SIGINT and SIGTERM sent to
// the launcher go on to every rank.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"

extern char** environ;

namespace petaring::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct LaunchArgs {
  int ranks = 1;
  int port = 0;
  double grace_seconds = 5;
  std::vector<std::string> command;
};

volatile std::sig_atomic_t received_signal = 0;

void on_signal(int signal) { received_signal = signal; }

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;  // from waitpid, once it stopped running
};

// The environment of rank `rank`: ours without any PETARING_ launch variables, plus them.
std::vector<std::string> rank_environment(int rank, int size, const std::string& store) {
  std::vector<std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    bool ours = text.starts_with("PETARING_RANK=") || text.starts_with("PETARING_WORLD_SIZE=") ||
                text.starts_with("PETARING_LOCAL_RANK=") ||
                text.starts_with("PETARING_LOCAL_WORLD_SIZE=") ||
                text.starts_with("PETARING_STORE=");
    if (!ours) variables.push_back(std::move(text));
  }
  variables.push_back(str_cat("PETARING_RANK=", rank));
  variables.push_back(str_cat("PETARING_WORLD_SIZE=", size));
  variables.push_back(str_cat("PETARING_LOCAL_RANK=", rank));
  variables.push_back(str_cat("PETARING_LOCAL_WORLD_SIZE=", size));
  variables.push_back("PETARING_STORE=" + store);
  return variables;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Starts one rank; everything the child needs is built before fork().
Child spawn(int rank, int size, const std::string& store, std::vector<std::string> command) {
  std::vector<std::string> environment = rank_environment(rank, size, store);
  std::vector<char*> argv = c_strings(command);
  std::vector<char*> envp = c_strings(environment);
  pid_t pid = ::fork();
  if (pid < 0) PR_FAIL(kFailedPrecondition, "petaring launch: fork failed for rank ", rank, ": ", std::strerror(errno));
  if (pid == 0) {
    ::execvpe(argv[0], argv.data(), envp.data());
    std::fprintf(stderr, "petaring launch: cannot run '%s' for rank %d: %s\n", argv[0], rank,
                 std::strerror(errno));
    std::_Exit(127);
  }
  return Child{rank, pid, true, 0};
}

std::string describe(const Child& child) {
  if (WIFSIGNALED(child.status)) {
    int signal = WTERMSIG(child.status);
    return str_cat("rank ", child.rank, " (pid ", child.pid, ") was killed by signal ", signal,
                   " (", strsignal(signal), ")");
  }
  return str_cat("rank ", child.rank, " (pid ", child.pid, ") exited with code ",
                 WEXITSTATUS(child.status));
}

int exit_code_of(const Child& child) {
  if (WIFSIGNALED(child.status)) return 128 + WTERMSIG(child.status);
  return WEXITSTATUS(child.status);
}

bool failed(const Child& child) { return exit_code_of(child) != 0; }

void signal_running(std::vector<Child>& children, int signal) {
  for (const Child& child : children) {
    if (child.running) ::kill(child.pid, signal);
  }
}

// Reaps every child that stopped; returns the failed ones, killed-by-signal first (a rank
// killed from outside dies before its peers notice and exit with errors of their own).
std::vector<Child*> reap(std::vector<Child>& children) {
  std::vector<Child*> failures;
  for (Child& child : children) {
    if (!child.running) continue;
    int status = 0;
    if (::waitpid(child.pid, &status, WNOHANG) != child.pid) continue;
    child.running = false;
    child.status = status;
    if (failed(child)) failures.push_back(&child);
  }
  std::stable_sort(failures.begin(), failures.end(), [](const Child* a, const Child* b) {
    return WIFSIGNALED(a->status) && !WIFSIGNALED(b->status);
  });
  return failures;
}

int run_launch(const LaunchArgs& args) {
  if (args.ranks < 1) PR_FAIL(kInvalidArgument, "petaring launch: -n must be at least 1, got ", args.ranks);
  if (args.command.empty()) {
    PR_FAIL(kInvalidArgument, "petaring launch: no command; write it after --, e.g. "
            "petaring launch -n 2 -- petaring train recipe.yaml");
  }
  TcpStoreServer server(args.port);
  std::string store = str_cat("127.0.0.1:", server.port());
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  std::fprintf(stderr, "petaring launch: %d rank(s) of '%s', store at %s\n", args.ranks,
               args.command[0].c_str(), store.c_str());

  std::vector<Child> children;
  for (int rank = 0; rank < args.ranks; ++rank) {
    children.push_back(spawn(rank, args.ranks, store, args.command));
  }
  const Child* first_failure = nullptr;
  int forwarded = 0;
  std::optional<Clock::time_point> kill_at;
  auto grace = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(args.grace_seconds));
  while (std::any_of(children.begin(), children.end(), [](const Child& c) { return c.running; })) {
    std::vector<Child*> failures = reap(children);
    for (const Child* failure : failures) {
      if (first_failure != nullptr) {  // the later failures, each named once
        std::fprintf(stderr, "petaring launch: then %s\n", describe(*failure).c_str());
      }
    }
    if (!failures.empty() && first_failure == nullptr && forwarded == 0) {
      first_failure = failures.front();
      int others = static_cast<int>(std::count_if(children.begin(), children.end(),
                                                  [](const Child& c) { return c.running; }));
      std::fprintf(stderr, "petaring launch: %s; stopping the other %d running rank(s)\n",
                   describe(*first_failure).c_str(), others);
      signal_running(children, SIGTERM);
      kill_at = Clock::now() + grace;
    }
    if (received_signal != 0 && forwarded != received_signal) {
      forwarded = received_signal;
      signal_running(children, forwarded);
      if (!kill_at) kill_at = Clock::now() + grace;
    }
    if (kill_at && Clock::now() >= *kill_at) {
      signal_running(children, SIGKILL);
      kill_at.reset();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (first_failure != nullptr) {
    std::fprintf(stderr, "petaring launch: failed: %s\n", describe(*first_failure).c_str());
    return exit_code_of(*first_failure);
  }
  if (forwarded != 0) return 128 + forwarded;
  return 0;
}

}  // namespace

void register_launch(CLI::App& app, CommandTable& table) {
  auto args = std::make_shared<LaunchArgs>();
  CLI::App* sub = app.add_subcommand("launch", "run N ranks of a command on this host, without MPI");
  sub->add_option("-n,--nproc", args->ranks, "number of ranks to start")->required();
  sub->add_option("--port", args->port, "TCP port of the job's store (default: any free port)");
  sub->add_option("--grace", args->grace_seconds,
                  "seconds between SIGTERM and SIGKILL when stopping ranks (default 5)");
  sub->add_option("command", args->command, "the rank's command, after --")->required();
  table.entries.emplace_back(sub, [args] { return run_launch(*args); });
}

}  // namespace petaring::cli
