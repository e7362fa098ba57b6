#include "collectives/store/mpi_store.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "collectives/transport/mpi/mpi_transport.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRequestTag = 1;
constexpr int kReplyTag = 2;
enum Op : uint8_t { kSet = 1, kGet = 2, kAdd = 3, kClose = 4 };
enum Status : uint8_t { kOk = 0, kMissing = 1, kBadCounter = 2 };
// The service thread and waiting clients poll MPI; between polls with nothing to do they
// sleep, doubling from kMinNap up to kMaxNap.
constexpr std::chrono::microseconds kMinNap{20};
constexpr std::chrono::microseconds kMaxNap{1000};
// How long rank 0 serves, at most, waiting for the others to close the store.
constexpr std::chrono::seconds kCloseTimeout{300};

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

void check_mpi(int code, const char* call) {
  if (code != MPI_SUCCESS) {
    PR_FAIL(kDisconnected, "MPI store: ", call, " failed: ", mpi_error_text(code));
  }
}

std::string encode(Op op, const std::string& key, const std::string& payload) {
  std::string message(1 + 4 + key.size() + payload.size(), '\0');
  message[0] = static_cast<char>(op);
  uint32_t length = static_cast<uint32_t>(key.size());
  std::memcpy(&message[1], &length, 4);
  std::memcpy(&message[5], key.data(), key.size());
  std::memcpy(&message[5 + key.size()], payload.data(), payload.size());
  return message;
}

std::string int_bytes(int64_t value) { return std::string(reinterpret_cast<char*>(&value), 8); }

int64_t bytes_int(const std::string& bytes) {
  int64_t value = 0;
  std::memcpy(&value, bytes.data(), std::min<size_t>(8, bytes.size()));
  return value;
}

// A counter's text back as a number; false when the key holds something else.
bool parse_counter(const std::string& text, int64_t* value) {
  try {
    size_t used = 0;
    *value = std::stoll(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

// Sends `bytes` to `peer` with `tag` (MPI_Isend polled under the MPI lock, the lock
// released between polls so that this process's other MPI users go on).
void send_bytes(MPI_Comm comm, int peer, int tag, const std::string& bytes) {
  MPI_Request request = MPI_REQUEST_NULL;
  {
    std::lock_guard<std::mutex> lock(mpi_call_mutex());
    check_mpi(MPI_Isend(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, peer, tag, comm,
                        &request),
              "MPI_Isend");
  }
  auto nap = kMinNap;
  for (;;) {
    int done = 0;
    {
      std::lock_guard<std::mutex> lock(mpi_call_mutex());
      check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    }
    if (done) return;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, kMaxNap);
  }
}

// Receives the next message with `tag` from `source` (MPI_ANY_SOURCE: anyone), polling;
// false (and nothing received) when `blocking` is false and none is waiting.
bool receive_bytes(MPI_Comm comm, int source, int tag, bool blocking, std::string* bytes,
                   int* from) {
  auto nap = kMinNap;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mpi_call_mutex());
      int found = 0;
      MPI_Status status;
      check_mpi(MPI_Iprobe(source, tag, comm, &found, &status), "MPI_Iprobe");
      if (found) {
        int count = 0;
        MPI_Get_count(&status, MPI_BYTE, &count);
        bytes->assign(static_cast<size_t>(count), '\0');
        check_mpi(MPI_Recv(bytes->data(), count, MPI_BYTE, status.MPI_SOURCE, tag, comm,
                           MPI_STATUS_IGNORE),
                  "MPI_Recv");
        if (from != nullptr) *from = status.MPI_SOURCE;
        return true;
      }
    }
    if (!blocking) return false;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, kMaxNap);
  }
}

}  // namespace

struct MpiStore::State {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  // Rank 0: the table, the gets waiting on it, and the service thread.
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, std::string> table;
  struct Waiter {
    int rank;
    std::string key;
    Clock::time_point deadline;
  };
  std::vector<Waiter> waiters;
  int closed = 0;  // ranks that said close
  bool stopping = false;
  std::thread service;

  // --- rank 0 (mutex held) ---
  // Runs one request from `from` and returns the replies it causes, (rank, bytes) each.
  void handle(int from, const std::string& request,
              std::vector<std::pair<int, std::string>>* replies) {
    PR_CHECK(request.size() >= 5) << "MPI store: short request from rank " << from;
    Op op = static_cast<Op>(request[0]);
    uint32_t length = 0;
    std::memcpy(&length, &request[1], 4);
    std::string key = request.substr(5, length);
    std::string payload = request.substr(5 + length);
    switch (op) {
      case kSet:
        table[key] = payload;
        wake(key, replies);
        replies->push_back({from, std::string(1, static_cast<char>(kOk))});
        break;
      case kGet: {
        auto found = table.find(key);
        if (found != table.end()) {
          replies->push_back({from, std::string(1, static_cast<char>(kOk)) + found->second});
        } else {
          waiters.push_back({from, key, Clock::now() + std::chrono::milliseconds(bytes_int(payload))});
        }
        break;
      }
      case kAdd: {
        int64_t value = 0;
        Status status = add_locked(key, bytes_int(payload), &value);
        if (status == kOk) wake(key, replies);
        replies->push_back({from, std::string(1, static_cast<char>(status)) + int_bytes(value)});
        break;
      }
      case kClose:
        ++closed;
        changed.notify_all();
        break;
    }
  }

  Status add_locked(const std::string& key, int64_t delta, int64_t* value) {
    int64_t current = 0;
    auto found = table.find(key);
    if (found != table.end() && !parse_counter(found->second, &current)) return kBadCounter;
    *value = current + delta;
    table[key] = std::to_string(*value);
    changed.notify_all();
    return kOk;
  }

  // Replies to the remote gets waiting for `key`.
  void wake(const std::string& key, std::vector<std::pair<int, std::string>>* replies) {
    changed.notify_all();
    const std::string& value = table[key];
    std::erase_if(waiters, [&](const Waiter& waiter) {
      if (waiter.key != key) return false;
      replies->push_back({waiter.rank, std::string(1, static_cast<char>(kOk)) + value});
      return true;
    });
  }

  void expire(std::vector<std::pair<int, std::string>>* replies) {
    auto now = Clock::now();
    std::erase_if(waiters, [&](const Waiter& waiter) {
      if (waiter.deadline > now) return false;
      replies->push_back({waiter.rank, std::string(1, static_cast<char>(kMissing))});
      return true;
    });
  }

  void serve() {
    auto nap = kMinNap;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) return;
      }
      std::string request;
      int from = 0;
      bool got = false;
      try {
        got = receive_bytes(comm, MPI_ANY_SOURCE, kRequestTag, false, &request, &from);
      } catch (const Error& error) {
        PR_LOG(kError) << error.what();
        return;
      }
      std::vector<std::pair<int, std::string>> replies;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (got) handle(from, request, &replies);
        expire(&replies);
      }
      try {
        for (auto& [rank, bytes] : replies) send_bytes(comm, rank, kReplyTag, bytes);
      } catch (const Error& error) {
        PR_LOG(kError) << error.what();
        return;
      }
      if (got) {
        nap = kMinNap;
      } else {
        std::this_thread::sleep_for(nap);
        nap = std::min(nap * 2, kMaxNap);
      }
    }
  }

  // --- the other ranks ---
  std::string call(Op op, const std::string& key, const std::string& payload) {
    send_bytes(comm, 0, kRequestTag, encode(op, key, payload));
    std::string reply;
    receive_bytes(comm, 0, kReplyTag, true, &reply, nullptr);
    PR_CHECK(!reply.empty()) << "MPI store: empty reply to rank " << rank;
    return reply;
  }
};

MpiStore::MpiStore(MPI_Comm comm) : state_(std::make_unique<State>()) {
  int initialized = 0, level = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialized);
  if (!initialized) {
    PR_FAIL(kFailedPrecondition, "the MPI store needs MPI initialized (MPI_Init_thread with ",
            "MPI_THREAD_SERIALIZED); start the job with mpirun");
  }
  MPI_Query_thread(&level);
  if (level < MPI_THREAD_SERIALIZED) {
    PR_FAIL(kFailedPrecondition, "the MPI store needs MPI_THREAD_SERIALIZED or better, but MPI ",
            "provides thread level ", level, "; use the TCP store instead");
  }
  std::lock_guard<std::mutex> lock(mpi_call_mutex());
  check_mpi(MPI_Comm_dup(comm, &state_->comm), "MPI_Comm_dup");
  MPI_Comm_rank(state_->comm, &state_->rank);
  MPI_Comm_size(state_->comm, &state_->size);
  if (state_->rank == 0 && state_->size > 1) {
    state_->service = std::thread([state = state_.get()] { state->serve(); });
  }
}

MpiStore::~MpiStore() {
  if (state_->rank != 0) {
    try {
      send_bytes(state_->comm, 0, kRequestTag, encode(kClose, "", ""));
    } catch (const Error& error) {
      PR_LOG(kWarn) << error.what();
    }
  } else if (state_->service.joinable()) {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (!state_->changed.wait_for(lock, kCloseTimeout,
                                  [&] { return state_->closed == state_->size - 1; })) {
      PR_LOG(kWarn) << "MPI store: only " << state_->closed << " of " << state_->size - 1
                    << " ranks closed the store within " << kCloseTimeout.count()
                    << " s; rank 0 stops serving it";
    }
    state_->stopping = true;
    lock.unlock();
    state_->service.join();
  }
  std::lock_guard<std::mutex> lock(mpi_call_mutex());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&state_->comm);
}

void MpiStore::set(const std::string& key, const std::string& value) {
  if (state_->rank != 0) {
    state_->call(kSet, key, value);
    return;
  }
  std::vector<std::pair<int, std::string>> replies;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->table[key] = value;
    state_->wake(key, &replies);
  }
  for (auto& [rank, bytes] : replies) send_bytes(state_->comm, rank, kReplyTag, bytes);
}

std::string MpiStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  if (state_->rank != 0) {
    std::string reply = state_->call(kGet, key, int_bytes(timeout.count()));
    if (reply[0] == kOk) return reply.substr(1);
  } else {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->changed.wait_for(lock, timeout, [&] { return state_->table.count(key) > 0; })) {
      return state_->table[key];
    }
  }
  PR_FAIL(kTimeout, "key '", key, "' did not appear in the MPI store (served by rank 0) within ",
          timeout.count(), " ms (rank ", state_->rank, " waited); did every rank start?");
}

int64_t MpiStore::add(const std::string& key, int64_t delta) {
  int64_t value = 0;
  Status status = kOk;
  if (state_->rank != 0) {
    std::string reply = state_->call(kAdd, key, int_bytes(delta));
    status = static_cast<Status>(reply[0]);
    value = bytes_int(reply.substr(1));
  } else {
    std::vector<std::pair<int, std::string>> replies;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      status = state_->add_locked(key, delta, &value);
      if (status == kOk) state_->wake(key, &replies);
    }
    for (auto& [rank, bytes] : replies) send_bytes(state_->comm, rank, kReplyTag, bytes);
  }
  if (status != kOk) {
    PR_FAIL(kInvalidArgument, "MPI store: key '", key, "' holds a value that is not a counter; ",
            "add() needs a key that only add() writes");
  }
  return value;
}

}  // namespace petaring
