// Usage accrual. A job that is billing accrues, for every GPU it holds, the time held
// (GPU-ms, exact integers) and time x the device's measured FLOP/s (estimated FLOPs).
// The same amounts go to the job, its tenant and each device's node, so the three
// ledgers always add up to the same GPU-ms total. Usage is settled lazily, when a job
// stops billing; ledger() adds what is not settled yet, and fair share reads a tenant's
// usage from running sums (Accruing) without settling anything.
#include "runtime/check.h"
#include "scheduler/scheduler_impl.h"

namespace petaring::scheduler {

double Scheduler::Impl::flops_rate(const Slot& slot) const {
  const NodeRec& rec = node(slot.node);
  return rec.info.devices[rec.position(slot.device)].flops_per_s;
}

void Scheduler::Impl::start_billing(JobRecord& j) {
  Billing b;
  b.tenant = &tenant_usage[j.spec.tenant];
  for (const Slot& slot : j.held) {
    double rate = flops_rate(slot);
    Usage* node = &node_usage[slot.node];
    if (b.parts.empty() || b.parts.back().node != node) b.parts.push_back({node, 0, 0});
    b.parts.back().gpus += 1;
    b.parts.back().flops_per_s += rate;
    b.flops_per_s += rate;
  }
  billing[j.spec.id] = std::move(b);
  Accruing& a = accruing[j.spec.tenant];
  a.gpus += static_cast<int64_t>(j.held.size());
  a.since_sum += static_cast<int64_t>(j.held.size()) * j.billed_until;
}

int64_t Scheduler::Impl::tenant_gpu_ms(const std::string& tenant) const {
  int64_t out = 0;
  if (auto it = tenant_usage.find(tenant); it != tenant_usage.end()) out += it->second.gpu_ms;
  if (auto it = accruing.find(tenant); it != accruing.end()) {
    out += it->second.gpus * now - it->second.since_sum;
  }
  return out;
}

void Scheduler::Impl::settle(JobRecord& j) {
  if (!j.billing) return;
  TimeMs dt = now - j.billed_until;
  j.billed_until = now;
  if (dt == 0) return;
  PR_CHECK_GT(dt, 0) << "job " << j.spec.id;
  const Billing& b = billing.at(j.spec.id);
  double seconds = static_cast<double>(dt) / 1000.0;
  int64_t gpu_ms = dt * static_cast<int64_t>(j.held.size());
  for (const Billing::Part& part : b.parts) {
    part.node->gpu_ms += dt * part.gpus;
    part.node->flops += part.flops_per_s * seconds;
  }
  accruing[j.spec.tenant].since_sum += gpu_ms;
  j.usage.gpu_ms += gpu_ms;
  j.usage.flops += b.flops_per_s * seconds;
  b.tenant->gpu_ms += gpu_ms;
  b.tenant->flops += b.flops_per_s * seconds;
}

void Scheduler::Impl::stop_billing(JobRecord& j) {
  if (!j.billing) return;
  settle(j);
  j.billing = false;
  billing.erase(j.spec.id);
  Accruing& a = accruing[j.spec.tenant];
  a.gpus -= static_cast<int64_t>(j.held.size());
  a.since_sum -= static_cast<int64_t>(j.held.size()) * j.billed_until;
}

Ledger Scheduler::ledger() const {
  const Impl& s = *impl_;
  // Settled usage plus what billing jobs accrued since they were last settled.
  std::map<JobId, Usage> jobs;
  std::map<std::string, Usage> tenants = s.tenant_usage;
  std::map<NodeId, Usage> nodes = s.node_usage;
  for (const auto& [id, j] : s.jobs) jobs[id] = j.usage;
  for (const auto& [id, b] : s.billing) {
    const JobRecord& j = s.jobs.at(id);
    double seconds = static_cast<double>(s.now - j.billed_until) / 1000.0;
    int64_t dt = s.now - j.billed_until;
    for (const Slot& slot : j.held) {
      nodes[slot.node].gpu_ms += dt;
      nodes[slot.node].flops += s.flops_rate(slot) * seconds;
    }
    for (Usage* u : {&jobs[id], &tenants[j.spec.tenant]}) {
      u->gpu_ms += dt * static_cast<int64_t>(j.held.size());
      u->flops += b.flops_per_s * seconds;
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
