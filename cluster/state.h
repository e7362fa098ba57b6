// PoolState: the coordinator's durable state in SQLite (WAL journal, synchronous=FULL):
// nodes, their devices, jobs, assignments (which rank of which attempt runs where) and
// the ledger of GPU-seconds delivered. Every call is one transaction and is on disk when
// it returns, so a coordinator killed with -9 and restarted loses no submitted job and
// no ledger row. Heartbeat times are not written (they change every second); a restarted
// coordinator gives every node a fresh heartbeat deadline instead.
// Not thread-safe: the coordinator calls it under its lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace petaring::cluster {

struct DeviceRow {
  uint32_t index = 0;
  std::string kind;
  uint64_t memory_bytes = 0;
  double flops_per_s = 0;  // the worker's measured speed (estimates FLOPs in the ledger)
};

struct NodeRow {
  int64_t id = 0;
  std::string name;
  std::string state;  // alive, dead, reclaimed
  std::vector<DeviceRow> devices;
};

struct JobRow {
  int64_t id = 0;
  std::string name;
  std::string recipe_yaml;
  uint32_t gpus = 1;              // world size of the current (or last) attempt
  uint32_t min_gpus = 1;          // elastic jobs run on any count in [min_gpus, max_gpus]
  uint32_t max_gpus = 1;
  int32_t priority = 0;
  std::string tenant;
  std::string state = "queued";  // queued, running, stopping, finished, failed, cancelled
  uint32_t attempt = 0;          // 0 until first placed
  std::string reason;
  std::string last_metrics;
  int64_t submitted_ms = 0;
  int64_t started_ms = 0;        // start of the current attempt
  int64_t finished_ms = 0;
  // While stopping: the state once every rank of the attempt has exited (queued or
  // cancelled; queued turns failed when out of attempts). Empty otherwise.
  std::string after_stop;
  // Attempts that ended in a failure (a rank's error exit, a lost node); preemptions,
  // reclaims and cancels do not count. The job fails when it reaches max_attempts.
  uint32_t failures = 0;
};

struct AssignmentRow {
  int64_t job_id = 0;
  uint32_t attempt = 0;
  uint32_t rank = 0;
  int64_t node_id = 0;
  uint32_t device_index = 0;
  // running; exited (the worker reported its exit code); gone (its worker no longer has
  // it: never started, or its node was declared dead or left; exit_code -1)
  std::string state = "running";
  int32_t exit_code = 0;
};

struct LedgerRow {
  int64_t id = 0;
  int64_t job_id = 0;
  uint32_t attempt = 0;
  std::string tenant;
  int64_t node_id = 0;
  double gpu_seconds = 0;
  double flops = 0;  // estimated (the scheduler's ledger: seconds held x measured FLOP/s)
  int64_t recorded_ms = 0;
};

class PoolState {
 public:
  // Opens (creating when missing) the database at `path`. Throws kFailedPrecondition
  // naming the file when SQLite cannot open it or set WAL.
  explicit PoolState(const std::string& path);
  ~PoolState();
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;

  // Inserts the node or, when its name exists, marks it alive and replaces its devices.
  int64_t upsert_node(const std::string& name, const std::vector<DeviceRow>& devices);
  void set_node_state(int64_t node_id, const std::string& state);
  std::vector<NodeRow> nodes();

  // Inserts `job` (its id is ignored) and returns the new id.
  int64_t add_job(const JobRow& job);
  void update_job(const JobRow& job);
  std::vector<JobRow> jobs();

  // Records a new attempt of `job` (already updated) and its placement, in one transaction.
  void start_attempt(const JobRow& job, const std::vector<AssignmentRow>& assignments);
  void set_assignment_end(int64_t job_id, uint32_t attempt, uint32_t rank, const std::string& state,
                          int32_t exit_code);
  std::vector<AssignmentRow> assignments(int64_t job_id, uint32_t attempt);
  // Every assignment of every running or stopping job's current attempt.
  std::vector<AssignmentRow> running_assignments();

  // Updates `job` and appends `entries` to the ledger in one transaction.
  void end_attempt(const JobRow& job, const std::vector<LedgerRow>& entries);
  std::vector<LedgerRow> ledger();

  struct Db;  // the implementation's (state.cc)

 private:
  std::unique_ptr<Db> db_;
};

int64_t now_ms();  // wall clock, milliseconds since the epoch

}  // namespace petaring::cluster
