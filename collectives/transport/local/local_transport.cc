#include "collectives/transport/local/local_transport.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "collectives/transport/peer_gate.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

struct Key {
  int source;
  int destination;
  uint64_t tag;
  bool operator<(const Key& other) const {
    return std::tie(source, destination, tag) <
           std::tie(other.source, other.destination, other.tag);
  }
};

// A posted receive waiting for its message. Guarded by the mailbox mutex.
struct Slot {
  void* data;
  size_t bytes;
  bool done = false;
  std::string error;  // set instead of copying when the sizes disagree
};

std::string size_mismatch(const Key& key, size_t sent, size_t expected) {
  return str_cat("rank ", key.destination, " expected ", expected, " bytes from rank ",
                 key.source, " (tag ", key.tag, ") but ", sent,
                 " arrived; the ranks are not calling the same collective with the same sizes");
}

class Mailbox {
 public:
  void send(const Key& key, const void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    Queue& queue = queues_[key];
    if (queue.receivers.empty()) {
      const char* begin = static_cast<const char*>(data);
      queue.messages.emplace_back(begin, begin + bytes);
      return;
    }
    std::shared_ptr<Slot> slot = std::move(queue.receivers.front());
    queue.receivers.pop_front();
    deliver(key, *slot, data, bytes);
    drop_if_empty(key);
    ready_.notify_all();
  }

  // Returns the slot to wait on, already done when a message was queued.
  std::shared_ptr<Slot> receive(const Key& key, void* data, size_t bytes) {
    auto slot = std::make_shared<Slot>(Slot{data, bytes, false, {}});
    std::lock_guard<std::mutex> lock(mutex_);
    Queue& queue = queues_[key];
    if (queue.messages.empty()) {
      queue.receivers.push_back(slot);
      return slot;
    }
    std::vector<char> message = std::move(queue.messages.front());
    queue.messages.pop_front();
    drop_if_empty(key);
    deliver(key, *slot, message.data(), message.size());
    return slot;
  }

  // True when the slot completed within `timeout`; throws when its message did not fit.
  // Returns early (false) once `aborted` is set; the caller checks it.
  bool wait(const Slot& slot, std::chrono::milliseconds timeout,
            const std::atomic<bool>& aborted) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return slot.done || aborted.load(); })) {
      return false;
    }
    if (!slot.done) return false;
    if (!slot.error.empty()) throw Error(ErrorKind::kFailedPrecondition, slot.error);
    return true;
  }

  // Wakes every waiter (after an abort).
  void wake() {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.notify_all();
  }

  bool test(const Slot& slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (slot.done && !slot.error.empty()) throw Error(ErrorKind::kFailedPrecondition, slot.error);
    return slot.done;
  }

  // Withdraws a receive that will not be waited for, so no sender writes into its buffer.
  void cancel(const Key& key, const std::shared_ptr<Slot>& slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (slot->done) return;
    auto found = queues_.find(key);
    if (found == queues_.end()) return;
    std::erase(found->second.receivers, slot);
    drop_if_empty(key);
  }

 private:
  struct Queue {
    std::deque<std::vector<char>> messages;          // sent, not yet received
    std::deque<std::shared_ptr<Slot>> receivers;     // posted, not yet matched
  };

  static void deliver(const Key& key, Slot& slot, const void* data, size_t bytes) {
    if (bytes != slot.bytes) {
      slot.error = size_mismatch(key, bytes, slot.bytes);
    } else if (bytes > 0) {
      std::memcpy(slot.data, data, bytes);
    }
    slot.done = true;
  }

  void drop_if_empty(const Key& key) {
    auto found = queues_.find(key);
    if (found != queues_.end() && found->second.messages.empty() &&
        found->second.receivers.empty()) {
      queues_.erase(found);
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::map<Key, Queue> queues_;
};

class DoneRequest : public Request {
 public:
  void wait(std::chrono::milliseconds) override {}
  bool test() override { return true; }
};

class ReceiveRequest : public Request {
 public:
  ReceiveRequest(std::shared_ptr<Mailbox> mailbox, Key key, std::shared_ptr<Slot> slot,
                 std::shared_ptr<std::atomic<bool>> aborted)
      : mailbox_(std::move(mailbox)), key_(key), slot_(std::move(slot)),
        aborted_(std::move(aborted)) {}
  ~ReceiveRequest() override { mailbox_->cancel(key_, slot_); }

  void wait(std::chrono::milliseconds timeout) override {
    check_aborted();
    if (mailbox_->wait(*slot_, timeout, *aborted_)) return;
    check_aborted();
    PR_FAIL(kTimeout, "rank ", key_.destination, " waited ", timeout.count(),
            " ms for a message from rank ", key_.source, " (tag ", key_.tag, ", ", slot_->bytes,
            " bytes) with no progress; is rank ", key_.source,
            " alive and calling the same collective? (local transport)");
  }
  bool test() override {
    check_aborted();
    return mailbox_->test(*slot_);
  }

 private:
  void check_aborted() const {
    if (aborted_->load()) {
      throw Error(ErrorKind::kFailedPrecondition,
                  transport_aborted_message(key_.destination, key_.source, "local"));
    }
  }

  std::shared_ptr<Mailbox> mailbox_;
  Key key_;
  std::shared_ptr<Slot> slot_;
  std::shared_ptr<std::atomic<bool>> aborted_;
};

// Ranks that are threads of one process share its address space: a peer's address is
// this rank's too. Copies pass the target's gate (peer_gate.h), shared by the group.
class SharedAddressSpace : public PeerMemory {
 public:
  SharedAddressSpace(int rank, int size, std::shared_ptr<std::vector<PeerGate>> gates)
      : rank_(rank), size_(size), gates_(std::move(gates)) {}
  bool reaches(int peer) const override { return peer >= 0 && peer < size_ && peer != rank_; }
  void read(int peer, uint64_t remote, void* local, size_t bytes) override {
    PR_CHECK(reaches(peer)) << "rank " << rank_ << " has no peer " << peer;
    copy_through_gate((*gates_)[static_cast<size_t>(peer)], rank_, peer, [&] {
      if (bytes > 0) std::memcpy(local, reinterpret_cast<const void*>(remote), bytes);
    });
  }
  void write(int peer, const void* local, uint64_t remote, size_t bytes) override {
    PR_CHECK(reaches(peer)) << "rank " << rank_ << " has no peer " << peer;
    copy_through_gate((*gates_)[static_cast<size_t>(peer)], rank_, peer, [&] {
      if (bytes > 0) std::memcpy(reinterpret_cast<void*>(remote), local, bytes);
    });
  }
  void close() { close_gate((*gates_)[static_cast<size_t>(rank_)]); }

 private:
  int rank_, size_;
  std::shared_ptr<std::vector<PeerGate>> gates_;  // index: rank
};

class LocalTransport : public Transport {
 public:
  LocalTransport(std::shared_ptr<Mailbox> mailbox, int rank, int size,
                 std::shared_ptr<std::vector<PeerGate>> gates)
      : mailbox_(std::move(mailbox)), rank_(rank), size_(size), memory_(rank, size, std::move(gates)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "local"; }
  PeerMemory* peer_memory() override { return &memory_; }

  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override {
    check_peer(peer);
    mailbox_->send(Key{rank_, peer, tag}, data, bytes);
    return std::make_unique<DoneRequest>();
  }

  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override {
    check_peer(peer);
    Key key{peer, rank_, tag};
    auto slot = mailbox_->receive(key, data, bytes);
    return std::make_unique<ReceiveRequest>(mailbox_, key, std::move(slot), aborted_);
  }

  void abort() override {
    aborted_->store(true);
    memory_.close();  // no peer copies into this rank's buffers after this returns
    mailbox_->wake();
  }

 private:
  void check_peer(int peer) const {
    PR_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " outside a group of " << size_;
  }

  std::shared_ptr<Mailbox> mailbox_;
  int rank_;
  int size_;
  SharedAddressSpace memory_;
  std::shared_ptr<std::atomic<bool>> aborted_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

std::vector<std::unique_ptr<Transport>> make_local_transports(int size) {
  PR_CHECK_GE(size, 1) << "a group needs at least one rank";
  auto mailbox = std::make_shared<Mailbox>();
  auto gates = std::make_shared<std::vector<PeerGate>>(static_cast<size_t>(size));
  std::vector<std::unique_ptr<Transport>> transports;
  for (int rank = 0; rank < size; ++rank) {
    transports.push_back(std::make_unique<LocalTransport>(mailbox, rank, size, gates));
  }
  return transports;
}

}  // namespace petaring
