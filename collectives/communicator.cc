#include "collectives/communicator.h"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "collectives/allgather.h"
#include "collectives/barrier.h"
#include "collectives/broadcast.h"
#include "collectives/direct.h"
#include "collectives/hierarchical.h"
#include "collectives/recursive_doubling.h"
#include "collectives/reduce_scatter.h"
#include "collectives/ring.h"
#include "collectives/signature.h"
#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

// Point-to-point tags: base + the pair's call number, apart from the collectives' tags
// (their sequence numbers) and from kSignatureTag.
constexpr uint64_t kPointToPointTagBase = uint64_t{1} << 30;

CollectiveSignature signature_of(CollectiveKind kind, uint64_t count, DType dtype, ReduceOp op,
                                 int root = -1) {
  CollectiveSignature signature;
  signature.kind = kind;
  signature.count = count;
  signature.dtype = dtype;
  signature.op = op;
  signature.root = root;
  return signature;
}

// PETARING_SMALL_MESSAGE_THRESHOLD: a byte count in decimal digits.
size_t parse_threshold(const char* text) {
  const std::string value = text;
  if (value.empty() || value.size() > 18 ||
      value.find_first_not_of("0123456789") != std::string::npos) {
    PR_FAIL(kInvalidArgument, "PETARING_SMALL_MESSAGE_THRESHOLD='", value,
            "' is not a byte count; set it to a number of bytes in decimal digits (e.g. ",
            Communicator::kDefaultSmallMessageThreshold, ") or unset it");
  }
  return static_cast<size_t>(std::stoull(value));
}

// PETARING_COLLECTIVE_TIMEOUT: seconds, a positive decimal number.
std::chrono::milliseconds parse_timeout(const char* text) {
  const std::string value = text;
  double seconds = -1;
  try {
    size_t used = 0;
    seconds = std::stod(value, &used);
    if (used != value.size()) seconds = -1;
  } catch (const std::exception&) {
    seconds = -1;
  }
  if (!(seconds > 0) || !std::isfinite(seconds) || seconds > 1e7) {
    PR_FAIL(kInvalidArgument, "PETARING_COLLECTIVE_TIMEOUT='", value,
            "' is not a timeout; set it to a positive number of seconds (e.g. 300 or 2.5) "
            "or unset it");
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000)));
}

}  // namespace

void Work::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

bool Work::test() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void Work::finish(std::exception_ptr error) {
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = std::move(error);
  done_ = true;
  finished_.notify_all();
}

Communicator::Communicator(std::unique_ptr<Transport> transport)
    : transport_(std::move(transport)) {
  PR_CHECK(transport_ != nullptr) << "a Communicator needs a transport";
  PR_CHECK(transport_->size() >= 1 && transport_->rank() >= 0 &&
           transport_->rank() < transport_->size())
      << "transport reports rank " << transport_->rank() << " of " << transport_->size();
  if (const char* text = std::getenv("PETARING_SMALL_MESSAGE_THRESHOLD")) {
    small_message_threshold_ = parse_threshold(text);
  }
  if (const char* text = std::getenv("PETARING_COLLECTIVE_TIMEOUT")) {
    timeout_ = parse_timeout(text);
  }
  if (const char* text = std::getenv("PETARING_HIERARCHICAL")) {
    const std::string value = text;
    if (value == "on") {
      hierarchical_ = Hierarchical::kOn;
    } else if (value == "off") {
      hierarchical_ = Hierarchical::kOff;
    } else if (value != "auto" && !value.empty()) {
      PR_FAIL(kInvalidArgument, "PETARING_HIERARCHICAL='", value,
              "' is not a mode; set it to auto, on or off, or unset it");
    }
  }
  if (const char* text = std::getenv("PETARING_SINGLE_COPY"); text != nullptr && *text) {
    const std::string value = text;
    if (value != "0" && value != "1") {
      PR_FAIL(kInvalidArgument, "PETARING_SINGLE_COPY='", value, "'; set it to 1 (the direct ",
              "collectives where the transport reaches every peer's memory, the default) or 0 ",
              "(always the ring), or unset it");
    }
    single_copy_ = value == "1";
  }
  sends_to_.assign(static_cast<size_t>(size()), 0);
  receives_from_.assign(static_cast<size_t>(size()), 0);
}

Communicator::~Communicator() {
  if (!progress_.joinable()) return;
  bool busy = false;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    busy = outstanding_ > 0;
    stopping_ = true;
  }
  if (busy) abort();  // work nobody waited for: do not let it outlive its buffers' owner
  queue_changed_.notify_all();
  progress_.join();
}

void Communicator::throw_if_aborted() const {
  if (aborted_.load()) {
    PR_FAIL(kFailedPrecondition, "rank ", rank(),
            ": the communicator was aborted (Communicator::abort), so it runs no more "
            "operations; look for the error that made this rank abort");
  }
}

template <typename Body>
void Communicator::run_in_order(Body&& body) {
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    idle = outstanding_ == 0;
  }
  if (idle) {
    throw_if_aborted();
    body();
    return;
  }
  enqueue(std::function<void()>(std::forward<Body>(body)))->wait();
}

std::shared_ptr<Work> Communicator::enqueue(std::function<void()> body) {
  auto work = std::make_shared<Work>();
  std::unique_lock<std::mutex> lock(queue_mutex_);
  if (aborted_.load()) {
    lock.unlock();
    try {
      throw_if_aborted();
    } catch (...) {
      work->finish(std::current_exception());
    }
    return work;
  }
  if (!progress_.joinable()) progress_ = std::thread([this] { progress_loop(); });
  queue_.push_back(Job{std::move(body), work});
  ++outstanding_;
  lock.unlock();
  queue_changed_.notify_all();
  return work;
}

void Communicator::progress_loop() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  for (;;) {
    queue_changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Job job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr error;
    try {
      throw_if_aborted();
      job.body();
    } catch (...) {
      error = std::current_exception();
    }
    job.body = nullptr;
    lock.lock();
    --outstanding_;  // before finish: a caller woken by it finds the communicator idle
    lock.unlock();
    job.work->finish(error);
    lock.lock();
  }
}

void Communicator::abort() {
  aborted_.store(true);
  transport_->abort();
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(queue_mutex_);
    dropped.swap(queue_);
    outstanding_ -= dropped.size();
  }
  for (Job& job : dropped) {
    try {
      throw_if_aborted();
    } catch (...) {
      job.work->finish(std::current_exception());
    }
  }
}

// The same on every member, distinct (up to a 2^-31 chance) from this group's, its other
// splits' and the other colors'.
uint64_t Communicator::next_group_id(int color) {
  uint64_t mix = group_id_ * 0x9e3779b97f4a7c15ull ^ (split_count_ + 1) * 0xbf58476d1ce4e5b9ull ^
                 static_cast<uint64_t>(color + 1) * 0x94d049bb133111ebull;
  mix ^= mix >> 31;
  mix *= 0xd6e8feb86659fd93ull;
  mix ^= mix >> 32;
  ++split_count_;
  return (mix & 0x7fff'ffffull) | 1;
}

void Communicator::init_hosts(const std::string& host) {
  run_in_order([&] {
    std::string name = host;
    if (name.empty()) {
      const char* fake = std::getenv("PETARING_HOST_ID");
      name = fake != nullptr && *fake != '\0' ? fake : local_host_name();
    }
    uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
    for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ull;
    const int n = size();
    std::vector<uint64_t> hashes(static_cast<size_t>(n));
    run_allgather(&hash, hashes.data(), 1, DType::kI64);
    // Host index: order of first appearance; local rank: order within the host.
    std::vector<int> host_of(n), local_of(n);
    std::vector<uint64_t> hosts;
    std::vector<int> counts;
    for (int r = 0; r < n; ++r) {
      auto found = std::find(hosts.begin(), hosts.end(), hashes[r]);
      int index = static_cast<int>(found - hosts.begin());
      if (found == hosts.end()) hosts.push_back(hashes[r]), counts.push_back(0);
      host_of[r] = index;
      local_of[r] = counts[index]++;
    }
    hosts_known_ = true;
    host_ = name;
    num_hosts_ = static_cast<int>(hosts.size());
    bool even = std::all_of(counts.begin(), counts.end(), [&](int c) { return c == counts[0]; });
    local_size_ = even ? counts[0] : 0;
    if (!even) return;
    const int me = rank();
    std::vector<int> intra, inter;
    for (int r = 0; r < n; ++r) {
      if (host_of[r] == host_of[me]) intra.push_back(r);    // by rank = by local rank
      if (local_of[r] == local_of[me]) inter.push_back(r);  // by rank = by host index
    }
    uint64_t intra_id = next_group_id(host_of[me]);
    intra_host_ = transport_->split(intra, intra_id, host_of[me], me);
    uint64_t inter_id = next_group_id(num_hosts_ + local_of[me]);
    inter_host_ = transport_->split(inter, inter_id, local_of[me], host_of[me]);
    if (me == 0) {
      PR_LOG(kInfo) << "collectives: " << num_hosts_ << " host(s) of " << local_size_
                    << " rank(s) each; hierarchical allreduce "
                    << (hierarchical_ == Hierarchical::kOff ? "off"
                        : hierarchical_ == Hierarchical::kOn ? "forced on"
                        : num_hosts_ > 1 && local_size_ > 1 ? "on (automatic)"
                                                            : "off (automatic: needs several hosts of several ranks)");
    }
  });
}

bool Communicator::use_hierarchical(size_t bytes) const {
  if (bytes <= small_message_threshold_ || hierarchical_ == Hierarchical::kOff) return false;
  if (hierarchical_ == Hierarchical::kOn) return true;
  return intra_host_ != nullptr && num_hosts_ > 1 && local_size_ > 1;
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  std::unique_ptr<Communicator> sub;
  run_in_order([&] {
    const int n = size();
    std::vector<int64_t> mine = {color < 0 ? kNoColor : color, key};
    std::vector<int64_t> all(2 * static_cast<size_t>(n));
    run_allgather(mine.data(), all.data(), 2, DType::kI64);
    // Members in sub-group rank order: by key, then by rank here.
    std::vector<int> members;
    for (int r = 0; r < n && color >= 0; ++r) {
      if (all[2 * r] == color) members.push_back(r);
    }
    std::stable_sort(members.begin(), members.end(),
                     [&](int a, int b) { return all[2 * a + 1] < all[2 * b + 1]; });
    const uint64_t group_id = next_group_id(color);
    std::unique_ptr<Transport> transport = transport_->split(members, group_id, color, key);
    if (transport == nullptr) return;
    sub = std::make_unique<Communicator>(std::move(transport));
    sub->group_id_ = group_id;
    sub->timeout_ = timeout_;
    sub->check_signatures_ = check_signatures_;
    sub->single_copy_ = single_copy_;
    sub->small_message_threshold_ = small_message_threshold_;
    sub->hierarchical_ = hierarchical_;
    if (hosts_known_) sub->init_hosts(host_);  // collective over the sub-group
  });
  return sub;
}

std::shared_ptr<Work> Communicator::allreduce_async(void* data, size_t count, DType dtype,
                                                    ReduceOp op) {
  return enqueue([=, this] { run_allreduce(data, data, count, dtype, op); });
}

std::shared_ptr<Work> Communicator::allreduce_async(const void* send, void* recv, size_t count,
                                                    DType dtype, ReduceOp op) {
  return enqueue([=, this] { run_allreduce(send, recv, count, dtype, op); });
}

std::shared_ptr<Work> Communicator::reduce_scatter_async(const void* send, void* recv,
                                                         size_t recv_count, DType dtype,
                                                         ReduceOp op) {
  return enqueue([=, this] { run_reduce_scatter(send, recv, recv_count, dtype, op); });
}

std::shared_ptr<Work> Communicator::allgather_async(const void* send, void* recv,
                                                    size_t send_count, DType dtype) {
  return enqueue([=, this] { run_allgather(send, recv, send_count, dtype); });
}

std::shared_ptr<Work> Communicator::broadcast_async(void* data, size_t bytes, int root) {
  return enqueue([=, this] { run_broadcast(data, bytes, root); });
}

std::shared_ptr<Work> Communicator::barrier_async() {
  return enqueue([this] { run_barrier(); });
}

// The same sequence on every rank as long as every rank makes the same calls in the same
// order; two calls never share a tag, so their messages never mix.
uint64_t Communicator::begin_collective(CollectiveSignature signature,
                                        std::function<void()>* check_later) {
  signature.sequence = sequence_++;
  if (check_later != nullptr) {
    if (check_signatures_) {
      *check_later = [this, signature] { check_signatures(*transport_, signature, timeout_); };
    }
    return signature.sequence;
  }
  if (check_signatures_) check_signatures(*transport_, signature, timeout_);
  return signature.sequence;
}

void Communicator::allreduce(void* data, size_t count, DType dtype, ReduceOp op) {
  run_in_order([&] { run_allreduce(data, data, count, dtype, op); });
}

void Communicator::allreduce(const void* send, void* recv, size_t count, DType dtype,
                             ReduceOp op) {
  run_in_order([&] { run_allreduce(send, recv, count, dtype, op); });
}

void Communicator::reduce_scatter(const void* send, void* recv, size_t recv_count, DType dtype,
                                  ReduceOp op) {
  run_in_order([&] { run_reduce_scatter(send, recv, recv_count, dtype, op); });
}

void Communicator::allgather(const void* send, void* recv, size_t send_count, DType dtype) {
  run_in_order([&] { run_allgather(send, recv, send_count, dtype); });
}

void Communicator::broadcast(void* data, size_t bytes, int root) {
  run_in_order([&] { run_broadcast(data, bytes, root); });
}

void Communicator::barrier() {
  run_in_order([&] { run_barrier(); });
}

void Communicator::send(const void* data, size_t bytes, int peer) {
  run_in_order([&] { run_send(data, bytes, peer); });
}

void Communicator::recv(void* data, size_t bytes, int peer) {
  run_in_order([&] { run_recv(data, bytes, peer); });
}

void Communicator::set_small_message_threshold(size_t bytes) {
  small_message_threshold_ = bytes;
}

const char* Communicator::allreduce_algorithm(size_t bytes) const {
  if (use_hierarchical(bytes)) return "hierarchical";
  if (bytes <= small_message_threshold_) return "recursive-doubling";
  return use_direct() ? "direct" : "ring";
}

void Communicator::run_allreduce(const void* send, void* recv, size_t count, DType dtype,
                                 ReduceOp op) {
  const size_t bytes = count * dtype_size(dtype);
  // Recursive doubling and the ring run the signature check while their first message
  // travels (it would otherwise add a round trip to every call: ~10 % of a 1 MiB
  // allreduce over tcp); the hierarchical path and empty calls check first.
  const bool hierarchical = use_hierarchical(bytes);
  const bool latency_path = !hierarchical && bytes <= small_message_threshold_;
  std::function<void()> check_later;
  const uint64_t tag = begin_collective(signature_of(CollectiveKind::kAllreduce, count, dtype, op),
                                        !hierarchical && count > 0 ? &check_later : nullptr);
  if (!logged_allreduce_choice_) {
    logged_allreduce_choice_ = true;
    if (rank() == 0) {
      PR_LOG(kInfo) << "collectives: allreduce uses recursive doubling up to "
                    << small_message_threshold_ << " bytes and the "
                    << allreduce_algorithm(small_message_threshold_ + 1) << " above, over "
                    << size() << " rank(s)";
    }
  }
  if (use_hierarchical(bytes)) {
    if (intra_host_ == nullptr) {
      PR_FAIL(kFailedPrecondition, "rank ", rank(), ": the hierarchical allreduce is forced on (",
              "PETARING_HIERARCHICAL or set_hierarchical) but ",
              hosts_known_ ? "the hosts hold different numbers of ranks"
                           : "the hosts are not known (call init_hosts first)",
              "; set PETARING_HIERARCHICAL=auto or off");
    }
    HierarchicalOptions options;
    options.tag = tag;
    options.timeout = timeout_;
    options.small_message_threshold = small_message_threshold_;
    options.single_copy = single_copy_;
    hierarchical_allreduce(*intra_host_, *inter_host_, send, recv, count, dtype, op, options);
    return;
  }
  if (latency_path) {
    RecursiveDoublingOptions options;
    options.timeout = timeout_;
    options.tag = tag;
    options.before_first_receive = std::move(check_later);
    recursive_doubling_allreduce(*transport_, send, recv, count, dtype, op, options);
    return;
  }
  if (use_direct()) {
    DirectOptions options;
    options.tag = tag;
    options.timeout = timeout_;
    options.before_first_wait = std::move(check_later);
    options.aborted = &aborted_;
    direct_allreduce(*transport_, send, recv, count, dtype, op, options);
    return;
  }
  RingOptions options;
  options.tag = tag;
  options.timeout = timeout_;
  options.before_first_wait = std::move(check_later);
  ring_allreduce(*transport_, send, recv, count, dtype, op, options);
}

void Communicator::run_reduce_scatter(const void* send, void* recv, size_t recv_count,
                                      DType dtype, ReduceOp op) {
  ReduceScatterOptions options;
  options.tag =
      begin_collective(signature_of(CollectiveKind::kReduceScatter, recv_count, dtype, op),
                       recv_count > 0 ? &options.before_first_wait : nullptr);
  options.timeout = timeout_;
  if (use_direct_blocks(recv_count * size() * dtype_size(dtype))) {
    direct_reduce_scatter(*transport_, send, recv, recv_count, dtype, op,
                          DirectOptions{0, timeout_, options.tag, options.before_first_wait,
                                        &aborted_});
    return;
  }
  ring_reduce_scatter(*transport_, send, recv, recv_count, dtype, op, options);
}

void Communicator::run_allgather(const void* send, void* recv, size_t send_count,
                                 DType dtype) {
  AllgatherOptions options;
  options.tag = begin_collective(
      signature_of(CollectiveKind::kAllgather, send_count, dtype, ReduceOp::kSum),
      send_count > 0 ? &options.before_first_wait : nullptr);
  options.timeout = timeout_;
  if (use_direct_blocks(send_count * size() * dtype_size(dtype))) {
    direct_allgather(*transport_, send, recv, send_count, dtype,
                     DirectOptions{0, timeout_, options.tag, options.before_first_wait, &aborted_});
    return;
  }
  ring_allgather(*transport_, send, recv, send_count, dtype, options);
}

void Communicator::run_broadcast(void* data, size_t bytes, int root) {
  BroadcastOptions options;
  options.tag = begin_collective(
      signature_of(CollectiveKind::kBroadcast, bytes, DType::kU8, ReduceOp::kSum, root));
  options.timeout = timeout_;
  if (root < 0 || root >= size()) {
    PR_FAIL(kInvalidArgument, "broadcast root ", root, " is not a rank of this group of ",
            size(), " ranks; pass a root in [0, ", size() - 1, "]");
  }
  pipeline_broadcast(*transport_, data, bytes, root, options);
}

void Communicator::run_barrier() {
  BarrierOptions options;
  options.tag = begin_collective(
      signature_of(CollectiveKind::kBarrier, 0, DType::kU8, ReduceOp::kSum));
  options.timeout = timeout_;
  dissemination_barrier(*transport_, options);
}

const char* Communicator::block_algorithm(size_t bytes) const {
  return use_direct_blocks(bytes) ? "direct" : "ring";
}

bool Communicator::use_direct_blocks(size_t bytes) const {
  return bytes > small_message_threshold_ && use_direct();
}

bool Communicator::use_direct() const {
  return single_copy_ && peer_memory_of_all(*transport_) != nullptr;
}

void Communicator::check_peer(int peer, const char* what) const {
  if (peer < 0 || peer >= size() || peer == rank()) {
    PR_FAIL(kInvalidArgument, "rank ", rank(), ": ", what, " names peer ", peer,
            ", which is not another rank of this group of ", size(),
            " ranks; pass a peer in [0, ", size() - 1, "] other than ", rank());
  }
}

void Communicator::run_send(const void* data, size_t bytes, int peer) {
  check_peer(peer, "send");
  const uint64_t number = sends_to_[static_cast<size_t>(peer)]++;
  try {
    transport_->isend(peer, data, bytes, kPointToPointTagBase + number)->wait(timeout_);
  } catch (const Error& error) {
    throw Error(error.kind(), str_cat("rank ", rank(), ": send #", number, " of ", bytes,
                                      " bytes to rank ", peer, " failed: ", error.what()));
  }
}

void Communicator::run_recv(void* data, size_t bytes, int peer) {
  check_peer(peer, "recv");
  const uint64_t number = receives_from_[static_cast<size_t>(peer)]++;
  try {
    transport_->irecv(peer, data, bytes, kPointToPointTagBase + number)->wait(timeout_);
  } catch (const Error& error) {
    throw Error(error.kind(), str_cat("rank ", rank(), ": recv #", number, " of ", bytes,
                                      " bytes from rank ", peer, " failed: ", error.what()));
  }
}

}  // namespace petaring
