#include "cluster/rank_store.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "cluster/auth.h"
#include "cluster/connection.h"
#include "cluster/worker.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

std::string string_of(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

kj::ArrayPtr<const kj::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

std::string job_variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    PR_FAIL(kInvalidArgument, "PETARING_STORE names a pool store but ", name,
            " is not set; pool ranks are started by `petaring worker`");
  }
  return value;
}

}  // namespace

RankStore::RankStore(const std::string& coordinator, int64_t job_id, uint32_t attempt, const std::string& token)
    : coordinator_(coordinator), job_id_(job_id), attempt_(attempt) {
  ConnectOptions options;
  options.address = coordinator;
  options.role = wire::Role::RANK;
  options.name = rank_name(job_id, attempt);
  options.key = token;
  connection_ = std::make_unique<Connection>(options);
}

RankStore::~RankStore() = default;

void RankStore::set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  capnp::MallocMessageBuilder message;
  auto op = message.initRoot<wire::Envelope>().initStoreOp();
  op.setOp(wire::StoreOp::Op::SET);
  op.setKey(key);
  op.setValue(bytes_of(value));
  connection_->call(message);
}

std::string RankStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(2);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      capnp::MallocMessageBuilder message;
      auto op = message.initRoot<wire::Envelope>().initStoreOp();
      op.setOp(wire::StoreOp::Op::GET);
      op.setKey(key);
      auto reply = connection_->call(message);
      auto answer = reply->envelope().getStoreReply();
      if (answer.getFound()) return string_of(answer.getValue());
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      PR_FAIL(kTimeout, "key '", key, "' did not appear in the rendezvous of job ", job_id_, " attempt ", attempt_,
              " at the coordinator ", coordinator_, " within ", timeout.count(), " ms; did every rank start?");
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

int64_t RankStore::add(const std::string& key, int64_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  capnp::MallocMessageBuilder message;
  auto op = message.initRoot<wire::Envelope>().initStoreOp();
  op.setOp(wire::StoreOp::Op::ADD);
  op.setKey(key);
  op.setDelta(delta);
  auto reply = connection_->call(message);
  return std::stoll(string_of(reply->envelope().getStoreReply().getValue()));
}

std::string RankStore::local_ip() const { return connection_->local_ip(); }

void register_pool_store_scheme() {
  register_store_scheme("pool", [](const std::string& coordinator) -> std::unique_ptr<Store> {
    int64_t job = std::stoll(job_variable("PETARING_JOB_ID"));
    auto attempt = static_cast<uint32_t>(std::stoul(job_variable("PETARING_JOB_ATTEMPT")));
    return std::make_unique<RankStore>(coordinator, job, attempt, from_hex(job_variable("PETARING_JOB_TOKEN")));
  });
}

}  // namespace petaring::cluster
