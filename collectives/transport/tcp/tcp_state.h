// The TCP transport's byte-moving engine (internal to tcp_transport.cc): the ops, the
// per-peer streams and the state every thread of one transport shares, with the reading,
// writing, polling and failure handling that tcp_transport.h describes. The Request and
// Transport classes over it are in tcp_transport.cc.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/transport/tcp/tcp_connect.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::tcp_detail {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

inline constexpr size_t kHeaderBytes = 16;
// Bytes per read/write system call, at most: the state mutex is held during each one.
inline constexpr size_t kMaxChunk = size_t{1} << 20;
// Sends gathered into one sendmsg, at most.
inline constexpr int kMaxGather = 16;
// How long a wait on a live peer goes without progress once some other peer has failed.
inline constexpr std::chrono::milliseconds kSurvivorGrace{1000};
// The I/O thread takes over the sockets once no caller has waited for this long, and
// looks again this often.
inline constexpr std::chrono::milliseconds kIdleBeforeBackground{2};
// A blocked poll wakes at least this often to check timeouts and failures.
inline constexpr std::chrono::milliseconds kMaxPollSlice{200};

// One isend or irecv. Guarded by State::mutex.
struct Op {
  int peer = 0;
  uint64_t tag = 0;
  char* data = nullptr;
  size_t bytes = 0;
  bool done = false;
  bool in_flight = false;  // a receive matched to the frame being read now
  ErrorKind kind = ErrorKind::kInternal;
  std::string error;       // set when it failed
  uint64_t header[2] = {0, 0};
  size_t moved = 0;        // bytes of header + payload written (sends)

  void fail(ErrorKind failure, std::string message) {
    kind = failure;
    error = std::move(message);
    done = true;
  }
};
using OpPtr = std::shared_ptr<Op>;

struct Peer {
  PeerSocket connection;
  int fd = -1;      // the peer's bytes arrive here
  int out_fd = -1;  // this rank's bytes leave here (fd itself with one socket per pair)
  bool failed = false;
  std::string failure;
  Clock::time_point last_progress = Clock::now();
  // Receiving: the frame being read and where its payload goes.
  uint64_t header[2] = {0, 0};
  size_t header_read = 0;     // bytes of the header read so far
  bool in_body = false;       // the header is complete and the payload is being read
  std::map<uint64_t, std::deque<OpPtr>> posted;               // receives not yet matched
  std::map<uint64_t, std::deque<std::vector<char>>> arrived;  // frames not yet received
  OpPtr reading;              // the receive being filled, or null
  std::vector<char> spill;    // the payload being read when no receive was posted
  bool discard = false;       // the spill belongs to a receive that failed its size check
  size_t read_offset = 0;
  // Sending, in isend order; the front may be partly written (Op::moved).
  std::deque<OpPtr> sends;
};

inline std::string size_mismatch(int rank, int peer, uint64_t tag, size_t sent, size_t expected) {
  return str_cat("rank ", rank, " expected ", expected, " bytes from rank ", peer, " (tag ",
                 tag, ") but ", sent, " arrived; the ranks are not calling the same ",
                 "collective with the same sizes (tcp transport)");
}

inline bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

// Everything the threads of one transport share. Every socket system call is
// non-blocking and made with `mutex` held, so the byte streams and the ops' buffers are
// only ever touched by one thread at a time. Blocking happens in poll(2) without the
// mutex, by one thread at a time (`polling`): a caller inside wait(), or the I/O thread
// when no caller has waited for a while.
struct State {
  asio::io_context io;  // owns the sockets; nothing runs it after start-up
  std::mutex mutex;
  std::condition_variable changed;     // an op finished, the poller left poll, abort
  std::condition_variable background;  // wakes the I/O thread
  std::vector<Peer> peers;
  int rank = 0;
  int wake_fd = -1;            // eventfd: interrupts the thread blocked in poll
  std::string first_failure;   // the first peer failure, for waits on the survivors
  bool aborted = false;        // Transport::abort was called
  bool stopping = false;       // the transport is being destroyed
  bool polling = false;        // some thread is blocked in poll without the mutex
  bool background_polling = false;  // ... and it is the I/O thread
  bool kicked = false;         // wake_fd was written since the poll began
  int waiting = 0;             // callers inside wait() or a request's destructor
  std::chrono::microseconds spin{0};  // TcpTransportOptions::spin
  Clock::time_point last_wait = Clock::now();
  std::thread thread;

  // --- receiving (mutex held) ---
  // Reads what peer p has sent until the socket is empty or `until` is done. True when
  // bytes moved or the peer failed.
  bool read_from(int p, const Op* until) {
    Peer& peer = peers[p];
    bool progressed = false;
    while (!peer.failed && !(until && until->done)) {
      char* target;
      size_t want;
      if (!peer.in_body) {
        target = reinterpret_cast<char*>(peer.header) + peer.header_read;
        want = kHeaderBytes - peer.header_read;
      } else {
        target = (peer.reading ? peer.reading->data : peer.spill.data()) + peer.read_offset;
        want = std::min<size_t>(peer.header[1] - peer.read_offset, kMaxChunk);
      }
      ssize_t got = ::recv(peer.fd, target, want, MSG_DONTWAIT);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && would_block(errno)) break;
      progressed = true;
      if (got <= 0) {
        fail_socket(p, got == 0 ? 0 : errno);
        break;
      }
      peer.last_progress = Clock::now();
      if (!peer.in_body) {
        peer.header_read += static_cast<size_t>(got);
        if (peer.header_read == kHeaderBytes) on_header(p);
      } else {
        peer.read_offset += static_cast<size_t>(got);
        if (peer.read_offset == peer.header[1]) finish_body(p);
      }
    }
    return progressed;
  }

  void on_header(int p) {
    Peer& peer = peers[p];
    uint64_t tag = peer.header[0];
    size_t bytes = peer.header[1];
    peer.header_read = 0;
    peer.in_body = true;
    peer.read_offset = 0;
    peer.discard = false;
    auto found = peer.posted.find(tag);
    if (found != peer.posted.end()) {
      OpPtr op = std::move(found->second.front());
      found->second.pop_front();
      if (found->second.empty()) peer.posted.erase(found);
      if (op->bytes == bytes) {
        op->in_flight = true;
        peer.reading = std::move(op);
        if (bytes == 0) finish_body(p);
        return;
      }
      op->fail(ErrorKind::kFailedPrecondition, size_mismatch(rank, p, tag, bytes, op->bytes));
      changed.notify_all();
      peer.discard = true;
    }
    peer.spill.assign(bytes, 0);
    if (bytes == 0) finish_body(p);
  }

  void finish_body(int p) {
    Peer& peer = peers[p];
    peer.in_body = false;
    if (peer.reading) {
      peer.reading->in_flight = false;
      peer.reading->done = true;
      peer.reading.reset();
      changed.notify_all();
    } else if (!peer.discard) {
      deliver_or_keep(p, peer.header[0], std::move(peer.spill));
    }
    peer.spill = {};
  }

  // A whole frame from p: into the first posted receive of its tag, or kept for later.
  void deliver_or_keep(int p, uint64_t tag, std::vector<char> payload) {
    Peer& peer = peers[p];
    auto found = peer.posted.find(tag);
    if (found == peer.posted.end()) {
      peer.arrived[tag].push_back(std::move(payload));
      return;
    }
    OpPtr op = std::move(found->second.front());
    found->second.pop_front();
    if (found->second.empty()) peer.posted.erase(found);
    complete_from(*op, payload);
    changed.notify_all();
  }

  void complete_from(Op& op, const std::vector<char>& payload) {
    if (payload.size() != op.bytes) {
      return op.fail(ErrorKind::kFailedPrecondition,
                     size_mismatch(rank, op.peer, op.tag, payload.size(), op.bytes));
    }
    if (!payload.empty()) std::memcpy(op.data, payload.data(), payload.size());
    op.done = true;
  }

  // --- sending (mutex held) ---
  // Writes queued sends to p, several frames per system call, until the socket is full
  // or the queue empty. True when bytes moved or the peer failed.
  bool write_to(int p) {
    Peer& peer = peers[p];
    bool progressed = false;
    while (!peer.failed && !peer.sends.empty()) {
      iovec parts[2 * kMaxGather];
      int count = 0;
      size_t budget = kMaxChunk;
      for (size_t i = 0; i < peer.sends.size() && count + 2 <= 2 * kMaxGather && budget > 0;
           ++i) {
        Op& op = *peer.sends[i];
        if (op.moved < kHeaderBytes) {
          parts[count++] = {reinterpret_cast<char*>(op.header) + op.moved,
                            kHeaderBytes - op.moved};
        }
        size_t offset = op.moved > kHeaderBytes ? op.moved - kHeaderBytes : 0;
        size_t take = std::min(op.bytes - offset, budget);
        if (take > 0) parts[count++] = {op.data + offset, take};
        budget -= take;
        if (offset + take < op.bytes) break;  // the rest of this frame goes next time
      }
      msghdr message{};
      message.msg_iov = parts;
      message.msg_iovlen = static_cast<size_t>(count);
      ssize_t moved = ::sendmsg(peer.out_fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (moved < 0 && errno == EINTR) continue;
      if (moved < 0 && would_block(errno)) break;
      progressed = true;
      if (moved < 0) {
        fail_socket(p, errno);
        break;
      }
      peer.last_progress = Clock::now();
      size_t left = static_cast<size_t>(moved);
      while (left > 0) {
        Op& op = *peer.sends.front();
        size_t step = std::min(left, kHeaderBytes + op.bytes - op.moved);
        op.moved += step;
        left -= step;
        if (op.moved == kHeaderBytes + op.bytes) {
          op.done = true;
          peer.sends.pop_front();
          changed.notify_all();
        }
      }
    }
    return progressed;
  }

  // Moves whatever can move on every live socket now, without blocking. `until`: stop
  // reading a peer's stream once this op is done (its bytes stay in the socket for later).
  bool progress(const Op* until) {
    bool progressed = false;
    for (int p = 0; p < static_cast<int>(peers.size()); ++p) {
      if (p == rank || peers[p].failed) continue;
      if (!peers[p].sends.empty()) progressed |= write_to(p);
      progressed |= read_from(p, until);
    }
    return progressed;
  }

  // Blocks in poll (mutex released meanwhile) until a socket is ready, wake_fd is
  // written, or `slice` passes. The caller must hold `lock` and `polling` must be false.
  void poll_sockets(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds slice,
                    bool background_thread) {
    std::vector<pollfd> fds;
    fds.reserve(2 * peers.size() + 1);
    fds.push_back({wake_fd, POLLIN, 0});
    for (int p = 0; p < static_cast<int>(peers.size()); ++p) {
      if (p == rank || peers[p].failed) continue;
      const bool sending = !peers[p].sends.empty();
      if (peers[p].out_fd == peers[p].fd) {
        fds.push_back({peers[p].fd, static_cast<short>(sending ? POLLIN | POLLOUT : POLLIN), 0});
      } else {
        fds.push_back({peers[p].fd, POLLIN, 0});
        if (sending) fds.push_back({peers[p].out_fd, POLLOUT, 0});
      }
    }
    polling = true;
    background_polling = background_thread;
    kicked = false;
    lock.unlock();
    ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(slice.count(), 1)));
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t ignored = ::read(wake_fd, &count, sizeof(count));
    }
    lock.lock();
    polling = false;
    background_polling = false;
    changed.notify_all();  // a thread waiting for its turn to poll may take it
  }

  // Interrupts the thread blocked in poll so that it looks at the state again (mutex held).
  void kick() {
    if (!polling || kicked) return;
    kicked = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(wake_fd, &one, sizeof(one));
  }

  // --- the I/O thread: progress while no caller waits ---
  void background_loop() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      if (polling || waiting > 0 || Clock::now() - last_wait < kIdleBeforeBackground) {
        background.wait_for(lock, kIdleBeforeBackground);
        continue;
      }
      progress(nullptr);
      if (stopping || waiting > 0) continue;
      poll_sockets(lock, kMaxPollSlice, true);
      progress(nullptr);
    }
  }

  // --- failure (mutex held) ---
  void fail_socket(int p, int error_number) {
    std::string where = str_cat("rank ", p, " (at ", peers[p].connection.address, ")");
    bool closed = error_number == 0 || error_number == ECONNRESET || error_number == EPIPE;
    std::string reason = error_number == 0 ? "end of stream" : std::strerror(error_number);
    fail(p, closed ? str_cat(where, " closed its connection to rank ", rank, " (", reason,
                             "): its process exited or was killed; see that rank's log for ",
                             "why")
                   : str_cat("the connection from rank ", rank, " to ", where,
                             " failed: ", reason));
  }

  void fail(int p, const std::string& message) {
    Peer& peer = peers[p];
    if (peer.failed) return;
    peer.failed = true;
    // A later failure is usually a consequence of the first (a survivor that gave up on a
    // dead rank and exited): keep naming the first.
    peer.failure = first_failure.empty() ? message : str_cat(message, "; before that: ", first_failure);
    if (first_failure.empty()) first_failure = message;
    auto fail_op = [&](const OpPtr& op) {
      op->in_flight = false;
      if (!op->done) op->fail(ErrorKind::kDisconnected, peer.failure);
    };
    for (auto& [tag, queue] : peer.posted) {
      for (auto& op : queue) fail_op(op);
    }
    peer.posted.clear();
    if (peer.reading) fail_op(peer.reading);
    peer.reading.reset();
    for (auto& op : peer.sends) fail_op(op);
    peer.sends.clear();
    // The peer sees the end of the stream now; the descriptor is closed with the
    // transport (a thread may be polling it).
    if (peer.fd >= 0) ::shutdown(peer.fd, SHUT_RDWR);
    if (peer.out_fd >= 0 && peer.out_fd != peer.fd) ::shutdown(peer.out_fd, SHUT_RDWR);
    changed.notify_all();
    kick();
  }

  // Drives progress until `op` is done (mutex held through `lock`). Throws kTimeout,
  // kDisconnected (another peer failed) or the abort error; `op`'s own failure is left
  // in it.
  void drive(std::unique_lock<std::mutex>& lock, Op& op, bool send,
             std::chrono::milliseconds timeout) {
    ++waiting;
    struct Leave {
      State& state;
      ~Leave() {
        --state.waiting;
        state.last_wait = Clock::now();
      }
    } leave{*this};
    auto start = Clock::now();
    auto spin_until = start + spin;
    while (!op.done) {
      check_aborted(op.peer);
      Peer& peer = peers[op.peer];
      auto last = std::max(start, peer.last_progress);
      auto deadline = last + timeout;
      if (!first_failure.empty()) {
        // Another rank is gone: the group cannot finish a collective, so do not wait the
        // whole timeout for a peer that is probably waiting on the dead one too.
        if (Clock::now() >= last + kSurvivorGrace) {
          PR_FAIL(kDisconnected, first_failure, " (rank ", rank, " stopped waiting for rank ",
                  op.peer, ")");
        }
        deadline = std::min(deadline, last + kSurvivorGrace);
      }
      auto now = Clock::now();
      if (now >= deadline) {
        PR_FAIL(kTimeout, "rank ", rank, " waited ", timeout.count(), " ms to ",
                send ? "send to" : "receive from", " rank ", op.peer, " (at ",
                peer.connection.address, "; tag ", op.tag, ", ", op.bytes,
                " bytes) with no progress; is rank ", op.peer,
                " alive and calling the same collective? (tcp transport)");
      }
      if (polling) {
        // Another thread is blocked in poll: it moves the bytes and wakes us. The I/O
        // thread steps aside for a caller.
        if (background_polling) kick();
        changed.wait_until(lock, deadline);
        continue;
      }
      if (progress(&op) || op.done) continue;
      if (now < spin_until) {  // let other threads of this rank in, then look again
        lock.unlock();
        lock.lock();
        continue;
      }
      auto slice = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                   std::chrono::milliseconds(1);
      poll_sockets(lock, std::min(slice, kMaxPollSlice), false);
    }
  }

  void check_aborted(int peer) const {  // mutex held
    if (aborted) {
      throw Error(ErrorKind::kFailedPrecondition, transport_aborted_message(rank, peer, "tcp"));
    }
  }
};

}  // namespace petaring::tcp_detail
