// describe_wait(): why a job is where it is, in one sentence for `petaring job ID`.
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {
namespace {

std::string describe_need(const JobSpec& spec) {
  std::string out = str_cat(spec.min_gpus, spec.min_gpus == 1 ? " GPU" : " GPUs");
  if (spec.max_gpus > spec.min_gpus) out += str_cat(" (up to ", spec.max_gpus, ")");
  if (!spec.device_kind.empty()) out += str_cat(" of kind ", spec.device_kind);
  if (spec.memory_per_gpu_bytes > 0) out += str_cat(" with >= ", format_bytes(spec.memory_per_gpu_bytes));
  if (spec.tp_size > 1) {
    out += str_cat(" in tensor-parallel groups of ", spec.tp_size, " on one node over PCIe");
  }
  return out;
}

}  // namespace

std::string Scheduler::describe_wait(JobId id) const {
  const Impl& s = *impl_;
  const JobRecord& j = job(id);
  if (j.state != JobState::kQueued) {
    std::string out = to_string(j.state);
    if (!j.end_reason.empty() && j.state != JobState::kRunning) out += ": " + j.end_reason;
    return out;
  }
  Request req = request_for(j.spec);
  Capacity cap = s.count_capacity(req);
  std::string need = describe_need(j.spec);
  if (cap.units < req.min_units) {
    std::string out = str_cat("waiting: needs ", need, "; the pool has ", cap.gpus, " such GPU",
                              cap.gpus == 1 ? "" : "s", " lent");
    if (req.unit > 1) out += str_cat(" (room for ", cap.units, " group", cap.units == 1 ? "" : "s", ")");
    if (cap.reclaimed > 0) out += str_cat(" and ", cap.reclaimed, " reclaimed by their owners");
    return out + "; it starts when enough GPUs join the pool";
  }
  // A pass stops early once no GPU is free, so a job's WaitInfo may predate the current
  // head; only the current head and the jobs behind it get the specific sentences.
  WaitInfo::Reason reason = j.wait.reason;
  if ((reason == WaitInfo::Reason::kHeadOfQueue && s.head != id) ||
      (reason == WaitInfo::Reason::kBehindHead && j.wait.head != s.head)) {
    reason = WaitInfo::Reason::kNoRoom;
  }
  switch (reason) {
    case WaitInfo::Reason::kHeadOfQueue:
      if (j.wait.reserved_until == kNever) {
        return str_cat("waiting: first in line for ", need, "; GPUs are reserved for it as running jobs end");
      }
      return str_cat("waiting: first in line for ", need, "; expected to start by t = ",
                     j.wait.reserved_until, " ms");
    case WaitInfo::Reason::kBehindHead:
      return str_cat("waiting: needs ", need, "; queued behind job ", j.wait.head,
                     " (starting it now would delay that job)");
    default:
      return str_cat("waiting: needs ", need, "; ", s.free_total, " GPU",
                     s.free_total == 1 ? "" : "s", " free now");
  }
}

}  // namespace petaring::scheduler
