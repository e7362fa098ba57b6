// Plain values the scheduler takes and gives: inventory, job specs, placements,
// decisions, ledger rows and the whole serializable state. No behaviour here; the
// Scheduler class (scheduler/scheduler.h) owns the logic.
//
// Units everywhere: time in milliseconds (TimeMs, chosen by the caller: a simulation
// starts at 0, the coordinator uses wall-clock ms), memory in bytes, device speed in
// FLOP/s, usage in GPU-milliseconds (integers, so that ledger totals add up exactly)
// and FLOPs (estimated: seconds held x the device's measured FLOP/s).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace petaring::scheduler {

using TimeMs = int64_t;
using NodeId = int64_t;  // chosen by the caller (the coordinator's row id); > 0
using JobId = int64_t;   // chosen by the caller (the coordinator's row id); > 0

// "No end known": a job without a runtime estimate, or a time never reached.
inline constexpr TimeMs kNever = std::numeric_limits<TimeMs>::max();

// ---- inventory -------------------------------------------------------------------

enum class Link { kPcie, kUsb3 };  // how a device reaches its host
enum class Availability {
  kLent,       // the owner lends it: the scheduler may place ranks on it
  kReclaimed,  // the owner took it back (maybe for a while); not placeable
  kDead,       // gone (failed device, or its node was lost); not placeable
};

struct DeviceInfo {
  int index = 0;              // the device's index on its node (what the worker opens)
  std::string kind;           // "cpu", "gfx1100", ...: matched against JobSpec::device_kind
  int64_t memory_bytes = 0;   // usable memory
  Link link = Link::kPcie;
  double flops_per_s = 0;     // measured speed; only used to estimate FLOPs delivered
  Availability availability = Availability::kLent;
};

struct NodeInfo {
  NodeId id = 0;
  std::string name;                 // host name, for messages only
  std::vector<DeviceInfo> devices;  // indices unique within the node
};

// ---- jobs ------------------------------------------------------------------------

struct JobSpec {
  JobId id = 0;
  std::string tenant;           // fair share is computed per tenant
  int priority = 0;             // higher runs first; fair share orders within a priority
  int min_gpus = 1;             // a rigid job has min_gpus == max_gpus;
  int max_gpus = 1;             // an elastic one runs on any count in [min, max]
  int64_t memory_per_gpu_bytes = 0;
  int tp_size = 1;              // tensor-parallel group size: min/max are multiples of it;
                                // each group lands on one node, on PCIe devices only
  std::string device_kind;      // "" = any kind
  TimeMs expected_runtime_ms = 0;  // the user's estimate, 0 = unknown; only used for
                                   // backfill (a job with no estimate never runs on
                                   // GPUs reserved for the head job)
};

enum class JobState {
  kQueued,     // waiting for a placement (JobRecord::wait says why)
  kRunning,    // placed; its ranks run
  kStopping,   // told to stop (Decision kStop); still holds its GPUs until job_stopped()
  kFinished,   // terminal
  kFailed,     // terminal
  kCancelled,  // terminal
};

enum class StopCause {
  kNone = 0,
  kReclaimed,  // an owner took a GPU back: checkpoint, stop, then the job is re-placed
  kLost,       // a device or node died: stop now; the job restarts from its last checkpoint
  kCancelled,  // the user cancelled: stop, the job ends
};

// Where each rank runs: rank r uses ranks[r]. Tensor-parallel group g is ranks
// [g * tp_size, (g + 1) * tp_size), all on one node.
struct Slot {
  NodeId node = 0;
  int device = 0;  // DeviceInfo::index
  bool operator==(const Slot&) const = default;
};
struct Placement {
  std::vector<Slot> ranks;
};

// Why a queued job is not running, as of the last tick(). describe_wait() turns it
// into a sentence.
struct WaitInfo {
  enum class Reason {
    kNotConsidered,  // submitted after the last tick
    kPoolTooSmall,   // needs more matching GPUs than the pool has lent at all
    kNoRoom,         // not enough matching GPUs free now
    kHeadOfQueue,    // first in line; GPUs are reserved for it (reserved_until)
    kBehindHead,     // would delay the job at the head of the queue
  };
  Reason reason = Reason::kNotConsidered;
  int needs = 0;          // GPUs (its minimum)
  int exist = 0;          // matching GPUs the pool has lent (kPoolTooSmall, kNoRoom)
  int free = 0;           // GPUs free (of any kind) when the job was last considered
  int reclaimed = 0;      // matching GPUs their owners have taken back
  JobId head = 0;         // kBehindHead: the job it waits behind
  TimeMs reserved_until = kNever;  // kHeadOfQueue: expected start, kNever = unknown
};

struct Usage {
  int64_t gpu_ms = 0;  // sum over held GPUs of time held
  double flops = 0;    // estimated: sum of held time x flops_per_s
};

// Everything the scheduler knows about a job; also its persisted form.
struct JobRecord {
  JobSpec spec;
  JobState state = JobState::kQueued;
  TimeMs submitted_ms = 0;
  TimeMs started_ms = 0;        // start of the current (or last) run
  TimeMs ended_ms = 0;          // terminal states
  Placement placement;          // current run; kept after the end for reports
  std::vector<Slot> held;       // GPUs held now (placement minus lost devices)
  bool billing = false;         // held GPUs accrue usage (not after a loss)
  TimeMs billed_until = 0;      // usage settled up to here
  int restarts = 0;             // times re-queued after a reclaim or a loss
  std::string end_reason;       // kFailed / kCancelled / last stop reason
  StopCause stop_cause = StopCause::kNone;  // while kStopping
  WaitInfo wait;
  Usage usage;
};

// ---- decisions -------------------------------------------------------------------

struct Decision {
  enum class Action {
    kStart,  // start job's ranks on placement
    kStop,   // stop job (cause says how); answer with job_stopped() once every rank exited
  };
  Action action = Action::kStart;
  JobId job = 0;
  Placement placement;            // kStart only
  StopCause cause = StopCause::kNone;  // kStop only
  bool checkpoint_first = false;  // kStop: write a checkpoint before stopping
  std::string reason;             // one line for logs and `petaring job ID`
};

// ---- ledger ----------------------------------------------------------------------

struct LedgerRow {
  std::string key;  // job id, tenant name or node id, as text
  Usage usage;
};
struct Ledger {
  std::vector<LedgerRow> jobs, tenants, nodes;  // sorted by key (numeric for ids)
  Usage total;
};

// ---- state -----------------------------------------------------------------------

// The whole scheduler state as plain structs (what the coordinator persists).
// Scheduler(state) rebuilds an identical scheduler: same decisions for the same events.
struct SchedulerState {
  TimeMs now = 0;
  std::vector<NodeInfo> nodes;     // sorted by id
  std::vector<JobRecord> jobs;     // sorted by id, terminal jobs included
  std::vector<LedgerRow> tenants;  // settled usage per tenant
  std::vector<LedgerRow> nodes_usage;  // settled usage per node id (removed nodes too)
};

const char* to_string(Link link);
const char* to_string(Availability availability);
const char* to_string(JobState state);
const char* to_string(StopCause cause);

}  // namespace petaring::scheduler
