#include "collectives/transport/shm/shm_transport.h"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/transport/shm/shm_peer_memory.h"
#include "collectives/transport/shm/shm_segment.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr size_t kFrameHeader = 16;  // [u64 tag][u64 bytes]
constexpr milliseconds kLivenessPeriod{100};
constexpr milliseconds kFailedPeerGrace{1000};

// True when process `pid` has exited: it no longer exists, or it is a zombie (exited, not
// yet reaped by its parent: kill(pid, 0) still succeeds then).
bool process_gone(int64_t pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "pid (command) state ...": the command may hold spaces and parentheses.
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() &&
         (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

struct SendOp {
  char header[kFrameHeader];
  const char* data;
  size_t bytes;
  size_t offset = 0;  // over header and payload
  std::vector<char> owned;  // the payload, once its request is gone before completion
  bool done() const { return offset == kFrameHeader + bytes; }
};

struct RecvOp {
  uint64_t tag;
  char* data;
  size_t bytes;
  bool done = false;
  std::string error;  // set instead of delivering when the sizes disagree
  // irecv_reduce: the bytes are combined into `data` (data = data (op) received) straight
  // from the ring, element by element as they arrive.
  bool reduce = false;
  DType dtype = DType::kF32;
  ReduceOp op = ReduceOp::kSum;
};

struct Arrived {  // a message that came before its receive was posted
  uint64_t tag;
  std::unique_ptr<char[]> data;
  size_t bytes;
};

// The message currently streaming in from one source.
struct Incoming {
  char header[kFrameHeader];
  size_t header_got = 0;
  bool in_payload = false;
  uint64_t tag = 0;
  size_t length = 0;
  size_t got = 0;
  std::shared_ptr<RecvOp> target;    // a posted receive, written directly
  std::unique_ptr<char[]> buffer;    // else buffered, when it has no receive yet
  bool buffering = false;            // neither: dropped (withdrawn or wrong size)
  // A reducing target takes whole elements: the bytes of one element that were taken from
  // the ring but do not make a whole one yet (it straddles the ring's end, or the sender
  // has not written all of it). `got` counts only the bytes combined.
  char partial[8];
  size_t partial_bytes = 0;
};

struct Peer {
  shm::Ring out;  // this rank to the peer
  shm::Ring in;   // the peer to this rank
  std::atomic<uint32_t>* doorbell = nullptr;  // the peer's (in its segment)
  std::atomic<uint32_t>* sleepers = nullptr;
  int64_t pid = 0;
  bool dead = false;
  std::deque<std::shared_ptr<SendOp>> sends;
  std::deque<std::shared_ptr<RecvOp>> posted;
  std::deque<Arrived> arrived;
  Incoming incoming;
  Clock::time_point last_progress = Clock::now();
};

std::string size_mismatch(int rank, int source, uint64_t tag, size_t sent, size_t expected) {
  return str_cat("rank ", rank, " expected ", expected, " bytes from rank ", source, " (tag ",
                 tag, ") but ", sent, " arrived; the ranks are not calling the same collective ",
                 "with the same sizes (shm transport)");
}

class ShmTransport : public Transport {
 public:
  ShmTransport(std::vector<shm::Segment> segments, int rank, int size,
               const ShmTransportOptions& options, bool single_copy);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "shm"; }
  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override;
  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override;
  std::unique_ptr<Request> irecv_reduce(int peer, void* data, size_t bytes, uint64_t tag,
                                        DType dtype, ReduceOp op) override;
  bool reduces_on_receive() const override { return true; }
  PeerMemory* peer_memory() override { return peer_memory_.get(); }

  // Pushes every pending send and drains every incoming ring. mutex() held.
  void progress();
  // Everything below locks mutex() itself, except where it says "held".
  std::mutex& mutex() { return mutex_; }
  Clock::time_point last_progress(int p) {
    std::lock_guard<std::mutex> lock(mutex_);
    return peers_[p].last_progress;
  }
  bool dead(int p) {
    std::lock_guard<std::mutex> lock(mutex_);
    return peers_[p].dead;
  }
  int64_t pid(int p) const { return peers_[p].pid; }  // fixed at start-up
  const ShmTransportOptions& options() const { return options_; }
  // Marks peers whose process is gone; returns every dead rank, lowest first.
  std::vector<int> check_liveness();
  void cancel(int source, const std::shared_ptr<RecvOp>& op);
  void abort() override {
    aborted_.store(true);
    // Peers may be copying into this rank's buffers (direct.h): let no more start, and
    // wait out those under way, so that the buffers may go once the collective fails.
    if (peer_memory_) peer_memory_->close();
    shm::ring_doorbell(segments_[rank_].doorbell(), segments_[rank_].sleepers());
  }
  // Waiting without polling (ShmRequest::wait): doze_begin counts this thread as asleep
  // on this rank's doorbell and returns its value; the caller then checks once more for
  // something to do and, if nothing, calls doze(value, at_most), then doze_end.
  uint32_t doze_begin() {
    segments_[rank_].sleepers()->fetch_add(1, std::memory_order_seq_cst);
    return segments_[rank_].doorbell()->load(std::memory_order_seq_cst);
  }
  void doze(uint32_t seen, std::chrono::microseconds at_most) {
    shm::wait_doorbell(segments_[rank_].doorbell(), seen, at_most);
  }
  void doze_end() { segments_[rank_].sleepers()->fetch_sub(1, std::memory_order_seq_cst); }
  void check_aborted(int peer) const {
    if (aborted_.load(std::memory_order_relaxed)) {
      throw Error(ErrorKind::kFailedPrecondition, transport_aborted_message(rank_, peer, "shm"));
    }
  }

 private:
  bool push_sends(Peer& peer);
  bool drain(int source);
  // Combines what the ring holds of the incoming message into its reducing target; true
  // when bytes were taken.
  bool reduce_from_ring(Peer& peer);
  std::unique_ptr<Request> post_receive(int peer, std::shared_ptr<RecvOp> op);
  void begin_message(int source);
  void finish_message(int source);
  void check_peer(int peer) const {
    PR_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " outside a group of " << size_;
  }

  std::vector<shm::Segment> segments_;  // index: owner rank; rings point into these
  std::vector<Peer> peers_;
  int rank_;
  int size_;
  ShmTransportOptions options_;
  std::atomic<bool> aborted_{false};
  std::unique_ptr<shm::CmaPeerMemory> peer_memory_;  // null: single copy off
  std::mutex mutex_;  // guards peers_' queues and rings: requests may be used from any thread
};

// Common waiting loop; subclasses say when they are done.
class ShmRequest : public Request {
 public:
  ShmRequest(ShmTransport* transport, int peer, uint64_t tag, size_t bytes)
      : transport_(transport), peer_(peer), tag_(tag), bytes_(bytes) {}

  bool test() override {
    transport_->check_aborted(peer_);
    std::lock_guard<std::mutex> lock(transport_->mutex());
    transport_->progress();
    return finished();
  }

  void wait(milliseconds timeout) override {
    const ShmTransportOptions& options = transport_->options();
    Clock::time_point start = Clock::now(), last_check = start;
    for (int polls = 0;; ++polls) {
      if (test()) return;
      Clock::time_point now = Clock::now();
      auto idle = now - std::max(start, transport_->last_progress(peer_));
      if (polls > options.spin_polls) {
        if (idle < options.yield_window) {
          std::this_thread::yield();
        } else {
          // Asleep on this rank's doorbell until a peer moves bytes to or from it (or
          // max_sleep passes, for the timeout and liveness checks below).
          uint32_t seen = transport_->doze_begin();
          bool done = false;
          try {
            done = test();
          } catch (...) {
            transport_->doze_end();
            throw;
          }
          if (!done) transport_->doze(seen, options.max_sleep);
          transport_->doze_end();
          if (done) return;
        }
      }
      if (now - last_check >= kLivenessPeriod) {
        last_check = now;
        check_dead_peers(idle);
      }
      if (idle > timeout) {
        PR_FAIL(kTimeout, "rank ", transport_->rank(), ": ", verb(), " rank ", peer_, " (",
                bytes_, " bytes, tag ", tag_, ") made no progress for ", timeout.count(),
                " ms; is rank ", peer_, " alive and calling the same collective? (shm transport)");
      }
    }
  }

 protected:
  virtual bool finished() = 0;  // throws when the request failed; mutex() held
  virtual const char* verb() const = 0;

  ShmTransport* transport_;
  int peer_;
  uint64_t tag_;
  size_t bytes_;

 private:
  void check_dead_peers(Clock::duration idle) {
    const std::vector<int> dead = transport_->check_liveness();
    if (dead.empty()) return;
    bool own_peer = transport_->dead(peer_);
    if (!own_peer && idle < kFailedPeerGrace) return;
    if (test()) return;  // what it wrote before dying may complete this request
    int named = own_peer ? peer_ : dead.front();
    // Every rank found gone: the first to die (often not the one waited on, which may
    // have exited after failing because of it) must appear in the message.
    std::string others;
    for (int rank : dead) {
      if (rank == named) continue;
      others += str_cat(others.empty() ? "; also gone: " : ", ", "rank ", rank, " (pid ",
                        transport_->pid(rank), ")");
    }
    PR_FAIL(kDisconnected, "rank ", transport_->rank(), ": ", verb(), " rank ", peer_, " (",
            bytes_, " bytes, tag ", tag_, ") cannot complete: the process of rank ", named,
            " (pid ", transport_->pid(named), " on host ", local_host_name(), ") has exited",
            others, others.empty() ? "; see that rank's log" : "; see those ranks' logs",
            " for why (shm transport)");
  }
};

class SendRequest : public ShmRequest {
 public:
  SendRequest(ShmTransport* transport, int peer, uint64_t tag, std::shared_ptr<SendOp> op)
      : ShmRequest(transport, peer, tag, op->bytes), op_(std::move(op)) {}
  ~SendRequest() override {
    std::lock_guard<std::mutex> lock(transport_->mutex());
    if (op_->done() || op_->bytes == 0) return;
    op_->owned.assign(op_->data, op_->data + op_->bytes);  // the stream must stay whole
    op_->data = op_->owned.data();
  }

 protected:
  bool finished() override { return op_->done(); }
  const char* verb() const override { return "sending to"; }

 private:
  std::shared_ptr<SendOp> op_;
};

class ReceiveRequest : public ShmRequest {
 public:
  ReceiveRequest(ShmTransport* transport, int peer, std::shared_ptr<RecvOp> op)
      : ShmRequest(transport, peer, op->tag, op->bytes), op_(std::move(op)) {}
  ~ReceiveRequest() override {
    if (!op_->done) transport_->cancel(peer_, op_);
  }

 protected:
  bool finished() override {
    if (op_->done && !op_->error.empty()) throw Error(ErrorKind::kFailedPrecondition, op_->error);
    return op_->done;
  }
  const char* verb() const override { return "receiving from"; }

 private:
  std::shared_ptr<RecvOp> op_;
};

ShmTransport::ShmTransport(std::vector<shm::Segment> segments, int rank, int size,
                           const ShmTransportOptions& options, bool single_copy)
    : segments_(std::move(segments)), peers_(size), rank_(rank), size_(size), options_(options) {
  std::vector<int64_t> pids;
  std::vector<PeerGate*> gates;
  for (const shm::Segment& segment : segments_) {
    pids.push_back(segment.owner_pid());
    gates.push_back(segment.gate());
  }
  if (single_copy) {
    peer_memory_ = std::make_unique<shm::CmaPeerMemory>(rank, std::move(pids), std::move(gates));
  }
  for (int p = 0; p < size; ++p) {
    peers_[p].out = segments_[p].ring(rank);
    peers_[p].in = segments_[rank].ring(p);
    peers_[p].pid = segments_[p].owner_pid();
    peers_[p].doorbell = segments_[p].doorbell();
    peers_[p].sleepers = segments_[p].sleepers();
  }
}

std::unique_ptr<Request> ShmTransport::isend(int peer, const void* data, size_t bytes,
                                             uint64_t tag) {
  check_peer(peer);
  std::lock_guard<std::mutex> lock(mutex_);
  auto op = std::make_shared<SendOp>();
  uint64_t length = bytes;
  std::memcpy(op->header, &tag, 8);
  std::memcpy(op->header + 8, &length, 8);
  op->data = static_cast<const char*>(data);
  op->bytes = bytes;
  peers_[peer].sends.push_back(op);
  // Small messages usually leave at once; the peer may be asleep waiting for them.
  if (push_sends(peers_[peer])) shm::ring_doorbell(peers_[peer].doorbell, peers_[peer].sleepers);
  return std::make_unique<SendRequest>(this, peer, tag, std::move(op));
}

std::unique_ptr<Request> ShmTransport::irecv(int peer, void* data, size_t bytes, uint64_t tag) {
  return post_receive(peer, std::make_shared<RecvOp>(RecvOp{tag, static_cast<char*>(data), bytes, false, {}}));
}

std::unique_ptr<Request> ShmTransport::irecv_reduce(int peer, void* data, size_t bytes,
                                                    uint64_t tag, DType dtype, ReduceOp op) {
  PR_CHECK(bytes % dtype_size(dtype) == 0) << bytes << " bytes of " << dtype_name(dtype);
  auto receive = std::make_shared<RecvOp>(RecvOp{tag, static_cast<char*>(data), bytes, false, {}});
  receive->reduce = true;
  receive->dtype = dtype;
  receive->op = op;
  return post_receive(peer, std::move(receive));
}

std::unique_ptr<Request> ShmTransport::post_receive(int peer, std::shared_ptr<RecvOp> op) {
  check_peer(peer);
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t tag = op->tag;
  const size_t bytes = op->bytes;
  Peer& source = peers_[peer];
  auto found = std::find_if(source.arrived.begin(), source.arrived.end(),
                            [&](const Arrived& message) { return message.tag == tag; });
  if (found == source.arrived.end()) {
    source.posted.push_back(op);
  } else {
    if (found->bytes != bytes) {
      op->error = size_mismatch(rank_, peer, tag, found->bytes, bytes);
    } else if (op->reduce) {
      reduce_into(op->data, found->data.get(), bytes / dtype_size(op->dtype), op->dtype, op->op);
    } else if (bytes > 0) {
      std::memcpy(op->data, found->data.get(), bytes);
    }
    op->done = true;
    source.arrived.erase(found);
  }
  return std::make_unique<ReceiveRequest>(this, peer, std::move(op));
}

void ShmTransport::progress() {
  bool drained = false;
  for (int p = 0; p < size_; ++p) {
    bool moved = push_sends(peers_[p]);
    if (drain(p)) drained = moved = true;
    if (!moved) continue;
    peers_[p].last_progress = Clock::now();
    // Bytes into p's ring (p may wait to receive them) or out of it (p may wait for room).
    shm::ring_doorbell(peers_[p].doorbell, peers_[p].sleepers);
  }
  // Another thread of this rank (a sub-group's communicator) may sleep on a receive that
  // this call just completed.
  auto* own_sleepers = segments_[rank_].sleepers();
  if (drained && own_sleepers->load(std::memory_order_seq_cst) != 0) {
    shm::ring_doorbell(segments_[rank_].doorbell(), own_sleepers);
  }
}

bool ShmTransport::push_sends(Peer& peer) {
  bool moved = false;
  while (!peer.sends.empty()) {
    SendOp& op = *peer.sends.front();
    while (!op.done()) {
      size_t written = op.offset < kFrameHeader
                           ? peer.out.write(op.header + op.offset, kFrameHeader - op.offset)
                           : peer.out.write(op.data + (op.offset - kFrameHeader),
                                            kFrameHeader + op.bytes - op.offset);
      if (written == 0) return moved;
      op.offset += written;
      moved = true;
    }
    peer.sends.pop_front();
  }
  return moved;
}

bool ShmTransport::drain(int source) {
  Peer& peer = peers_[source];
  Incoming& in = peer.incoming;
  bool moved = false;
  for (;;) {
    if (!in.in_payload) {
      size_t got = peer.in.read(in.header + in.header_got, kFrameHeader - in.header_got);
      if (got == 0) return moved;
      moved = true;
      in.header_got += got;
      if (in.header_got < kFrameHeader) continue;
      begin_message(source);
    }
    if (in.got < in.length && in.target && in.target->reduce) {
      if (!reduce_from_ring(peer)) return moved;
      moved = true;
      if (in.got < in.length) continue;
    } else if (in.got < in.length) {
      char* target = in.target   ? in.target->data + in.got
                     : in.buffering ? in.buffer.get() + in.got
                                    : nullptr;
      size_t got = peer.in.read(target, in.length - in.got);
      if (got == 0) return moved;
      moved = true;
      in.got += got;
      if (in.got < in.length) continue;
    }
    finish_message(source);
  }
}

void ShmTransport::begin_message(int source) {
  Peer& peer = peers_[source];
  Incoming& in = peer.incoming;
  uint64_t length = 0;
  std::memcpy(&in.tag, in.header, 8);
  std::memcpy(&length, in.header + 8, 8);
  in.length = length;
  in.got = 0;
  in.partial_bytes = 0;
  in.in_payload = true;
  auto found = std::find_if(peer.posted.begin(), peer.posted.end(),
                            [&](const auto& op) { return op->tag == in.tag; });
  if (found == peer.posted.end()) {
    in.buffer.reset(new char[std::max<size_t>(in.length, 1)]);
    in.buffering = true;
    return;
  }
  std::shared_ptr<RecvOp> op = std::move(*found);
  peer.posted.erase(found);
  if (op->bytes != in.length) {
    op->error = size_mismatch(rank_, source, in.tag, in.length, op->bytes);
    op->done = true;  // the payload is dropped
  } else {
    in.target = std::move(op);
  }
}

void ShmTransport::finish_message(int source) {
  Peer& peer = peers_[source];
  Incoming& in = peer.incoming;
  if (in.target) {
    in.target->done = true;
    in.target.reset();
  } else if (in.buffering) {
    // A receive may have been posted while the message was streaming in.
    auto found = std::find_if(peer.posted.begin(), peer.posted.end(),
                              [&](const auto& op) { return op->tag == in.tag; });
    if (found == peer.posted.end()) {
      peer.arrived.push_back(Arrived{in.tag, std::move(in.buffer), in.length});
    } else {
      RecvOp& op = **found;
      if (op.bytes != in.length) {
        op.error = size_mismatch(rank_, source, in.tag, in.length, op.bytes);
      } else if (op.reduce) {
        reduce_into(op.data, in.buffer.get(), in.length / dtype_size(op.dtype), op.dtype, op.op);
      } else if (in.length > 0) {
        std::memcpy(op.data, in.buffer.get(), in.length);
      }
      op.done = true;
      peer.posted.erase(found);
    }
  }
  in.buffer.reset();
  in.buffering = false;
  in.in_payload = false;
  in.header_got = 0;
}

bool ShmTransport::reduce_from_ring(Peer& peer) {
  Incoming& in = peer.incoming;
  RecvOp& op = *in.target;
  const size_t element = dtype_size(op.dtype);
  bool taken = false;
  for (;;) {
    size_t contiguous = 0;
    const char* bytes = peer.in.peek(&contiguous);
    contiguous = std::min(contiguous, in.length - in.got - in.partial_bytes);
    if (contiguous == 0) return taken;
    taken = true;
    if (in.partial_bytes == 0 && contiguous >= element &&
        reinterpret_cast<uintptr_t>(bytes) % element != 0) {
      // Unaligned (after a frame of another element size): through an aligned copy.
      alignas(64) char aligned[4096];
      const size_t whole = std::min(contiguous, sizeof(aligned)) / element * element;
      std::memcpy(aligned, bytes, whole);
      reduce_into(op.data + in.got, aligned, whole / element, op.dtype, op.op);
      peer.in.consume(whole);
      in.got += whole;
      continue;
    }
    if (in.partial_bytes > 0 || contiguous < element) {
      // One element through `partial`: it straddles the ring's end, or the sender has not
      // written all of it yet.
      const size_t take = std::min(element - in.partial_bytes, contiguous);
      std::memcpy(in.partial + in.partial_bytes, bytes, take);
      peer.in.consume(take);
      in.partial_bytes += take;
      if (in.partial_bytes == element) {
        reduce_into(op.data + in.got, in.partial, 1, op.dtype, op.op);
        in.got += element;
        in.partial_bytes = 0;
      }
      continue;
    }
    const size_t whole = contiguous / element * element;
    reduce_into(op.data + in.got, bytes, whole / element, op.dtype, op.op);
    peer.in.consume(whole);
    in.got += whole;
  }
}

void ShmTransport::cancel(int source, const std::shared_ptr<RecvOp>& op) {
  std::lock_guard<std::mutex> lock(mutex_);
  Peer& peer = peers_[source];
  std::erase(peer.posted, op);
  if (peer.incoming.target == op) {  // the rest is dropped
    peer.incoming.got += peer.incoming.partial_bytes;
    peer.incoming.partial_bytes = 0;
    peer.incoming.target.reset();
  }
}

std::vector<int> ShmTransport::check_liveness() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int> dead;
  for (int p = size_ - 1; p >= 0; --p) {
    Peer& peer = peers_[p];
    if (!peer.dead && p != rank_ && process_gone(peer.pid)) peer.dead = true;
    if (peer.dead) dead.insert(dead.begin(), p);
  }
  return dead;
}

}  // namespace

std::unique_ptr<Transport> shm::make_transport_over(std::vector<Segment> segments, int rank,
                                                    int size, const ShmTransportOptions& options,
                                                    bool single_copy) {
  return std::make_unique<ShmTransport>(std::move(segments), rank, size, options, single_copy);
}

}  // namespace petaring
