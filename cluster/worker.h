// Worker: lends one node's devices to a pool.
//
// run() connects to the coordinator (role worker, pool secret), registers the node's
// devices, then heartbeats every `heartbeat_interval` until the node is reclaimed or
// request_stop() is called. Each heartbeat reports the ranks running here, the ranks
// that exited since the last acknowledged heartbeat (exit code, 128+signal when killed)
// and rank 0's last metrics line; the reply brings assignments to start and ranks to
// stop. A rank is a child process in its own process group, started in the job's own
// working directory (`workdir`/job-ID) as
//   petaring pool-rank -- petaring train recipe.yaml --set checkpoint.dir=CHECKPOINTS
//       [--metrics ...] [--resume]   (--resume on a later attempt when a checkpoint exists)
// where CHECKPOINTS is the folder the coordinator hands the attempt (on a filesystem all
// workers share; CoordinatorOptions::shared_dir), else JOBDIR/checkpoints.
// `pool-rank` authenticates with the job attempt's token (PETARING_JOB_TOKEN), checks
// with the coordinator that the attempt still runs, and execs `petaring train` with
// PETARING_RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE, PETARING_TRANSPORT=tcp and
// PETARING_STORE=pool://COORDINATOR: the ranks meet through the coordinator, each proving
// the token (rank_store.h).
// Ranks die with the worker (PR_SET_PDEATHSIG), so a lost node takes its ranks with it.
// A lost coordinator connection is retried; running ranks are kept and re-reported.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace petaring::cluster {

struct WorkerOptions {
  std::string coordinator;   // host:port
  std::string secret;
  std::string name;          // node name; default: host name
  std::string devices = "cpu:2";  // KIND:COUNT
  std::string workdir = "petaring-work";
  std::string petaring = "/proc/self/exe";  // the program to start ranks with
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds stop_grace{3000};  // SIGTERM, then SIGKILL after this
  std::chrono::milliseconds reconnect_timeout{60000};
};

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  // Blocks; returns when reclaimed or stopped. Throws when the coordinator stays
  // unreachable for reconnect_timeout or rejects the secret.
  void run();
  void request_stop();  // thread-safe; ranks are stopped before run() returns

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The `petaring pool-rank` step: proves the token of job attempt (PETARING_JOB_ID,
// PETARING_JOB_ATTEMPT, PETARING_JOB_TOKEN hex) to the coordinator at PETARING_COORDINATOR.
// Throws kPermissionDenied for a wrong token and kFailedPrecondition when the attempt no
// longer runs.
void join_job(const std::string& coordinator, int64_t job_id, uint32_t attempt, const std::string& token);

std::string to_hex(const std::string& bytes);
std::string from_hex(const std::string& hex);

}  // namespace petaring::cluster
