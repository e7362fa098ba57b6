// Usage accrual. A job that is billing accrues, for every GPU it holds, the time held
// (GPU-ms, exact integers) and time x the device's measured FLOP/s (estimated FLOPs).
// The same amounts go to the job, its tenant and each device's node, so the three
// ledgers always add up to the same GPU-ms total. Usage is settled lazily: at every
// tick() for all billing jobs, and for one job whenever its GPUs change.
#include "runtime/check.h"
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {

double Scheduler::Impl::flops_rate(const Slot& slot) const {
  const NodeRec& rec = node(slot.node);
  return rec.info.devices[rec.position(slot.device)].flops_per_s;
}

void Scheduler::Impl::settle(JobRecord& j) {
  if (!j.billing) return;
  TimeMs dt = now - j.billed_until;
  j.billed_until = now;
  if (dt == 0) return;
  PR_CHECK_GT(dt, 0) << "job " << j.spec.id;
  Usage& tenant = tenant_usage[j.spec.tenant];
  for (const Slot& slot : j.held) {
    double flops = flops_rate(slot) * static_cast<double>(dt) / 1000.0;
    Usage& n = node_usage[slot.node];
    n.gpu_ms += dt;
    n.flops += flops;
    j.usage.gpu_ms += dt;
    j.usage.flops += flops;
    tenant.gpu_ms += dt;
    tenant.flops += flops;
  }
}

void Scheduler::Impl::settle_all() {
  for (JobId id : billing) settle(jobs.at(id));
}

void Scheduler::Impl::stop_billing(JobRecord& j) {
  settle(j);
  j.billing = false;
  billing.erase(j.spec.id);
}

Ledger Scheduler::ledger() const {
  const Impl& s = *impl_;
  // Settled usage plus what billing jobs accrued since they were last settled.
  std::map<JobId, Usage> jobs;
  std::map<std::string, Usage> tenants = s.tenant_usage;
  std::map<NodeId, Usage> nodes = s.node_usage;
  for (const auto& [id, j] : s.jobs) jobs[id] = j.usage;
  for (JobId id : s.billing) {
    const JobRecord& j = s.jobs.at(id);
    TimeMs dt = s.now - j.billed_until;
    for (const Slot& slot : j.held) {
      double flops = s.flops_rate(slot) * static_cast<double>(dt) / 1000.0;
      for (Usage* u : {&jobs[id], &tenants[j.spec.tenant], &nodes[slot.node]}) {
        u->gpu_ms += dt;
        u->flops += flops;
      }
    }
  }
  Ledger out;
  for (const auto& [id, u] : jobs) {
    out.jobs.push_back({std::to_string(id), u});
    out.total.gpu_ms += u.gpu_ms;
    out.total.flops += u.flops;
  }
  for (const auto& [name, u] : tenants) out.tenants.push_back({name, u});
  for (const auto& [id, u] : nodes) out.nodes.push_back({std::to_string(id), u});
  return out;
}

}  // namespace petaring::scheduler
