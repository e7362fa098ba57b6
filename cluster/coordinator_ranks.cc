// The ranks' side of the coordinator: a rank proves its attempt's token in the handshake,
// then may check that its attempt still runs (join) and use that attempt's rendezvous
// table (rank_store.h), and nothing else: its requests name no job.
#include "cluster/coordinator_impl.h"

#include <cstdlib>

#include "runtime/error.h"

namespace petaring::cluster {

void Coordinator::Impl::join_job(const Peer& peer, wire::JoinJob::Reader request, wire::Joined::Builder) {
  if (request.getJobId() != peer.job_id || request.getAttempt() != peer.attempt) {
    PR_FAIL(kPermissionDenied, "a rank of job ", peer.job_id, " attempt ", peer.attempt,
            " may not join job ", request.getJobId(), " attempt ", request.getAttempt());
  }
  running_attempt_or_fail(peer);
}

void Coordinator::Impl::running_attempt_or_fail(const Peer& peer) const {
  auto job = jobs_.find(peer.job_id);
  if (job == jobs_.end() || job->second.state != "running" || job->second.attempt != peer.attempt) {
    PR_FAIL(kFailedPrecondition, "job ", peer.job_id, " attempt ", peer.attempt, " is not running",
            job == jobs_.end() ? std::string()
                               : str_cat(" (the job is ", job->second.state, " at attempt ", job->second.attempt,
                                         ")"),
            "; this rank should exit");
  }
}

void Coordinator::Impl::store_op(const Peer& peer, wire::StoreOp::Reader request, wire::StoreReply::Builder reply) {
  running_attempt_or_fail(peer);
  constexpr size_t kMaxKeys = 65536, kMaxKeyBytes = 1024, kMaxValueBytes = 1 << 20;
  std::string key = request.getKey();
  if (key.size() > kMaxKeyBytes) PR_FAIL(kInvalidArgument, "store key of ", key.size(), " bytes; at most ", kMaxKeyBytes);
  auto& table = tables_[{peer.job_id, peer.attempt}];
  if (request.getOp() != wire::StoreOp::Op::GET && !table.count(key) && table.size() >= kMaxKeys) {
    PR_FAIL(kInvalidArgument, "the rendezvous of job ", peer.job_id, " holds ", kMaxKeys, " keys already");
  }
  switch (request.getOp()) {
    case wire::StoreOp::Op::SET: {
      auto value = request.getValue();
      if (value.size() > kMaxValueBytes) {
        PR_FAIL(kInvalidArgument, "store value of ", value.size(), " bytes for key '", key, "'; at most ", kMaxValueBytes);
      }
      table[key] = std::string(reinterpret_cast<const char*>(value.begin()), value.size());
      reply.setFound(true);
      return;
    }
    case wire::StoreOp::Op::GET: {
      auto found = table.find(key);
      reply.setFound(found != table.end());
      if (found != table.end()) {
        reply.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(found->second.data()), found->second.size()));
      }
      return;
    }
    case wire::StoreOp::Op::ADD: {
      int64_t count = 0;
      auto found = table.find(key);
      if (found != table.end()) {
        char* end = nullptr;
        count = std::strtoll(found->second.c_str(), &end, 10);
        if (found->second.empty() || *end != '\0') {
          PR_FAIL(kInvalidArgument, "store key '", key, "' does not hold a counter");
        }
      }
      std::string text = std::to_string(count + request.getDelta());
      table[key] = text;
      reply.setFound(true);
      reply.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
      return;
    }
  }
  PR_FAIL(kInvalidArgument, "unknown store operation ", static_cast<int>(request.getOp()));
}

}  // namespace petaring::cluster
