#include "collectives/transport/tcp/tcp_transport.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <condition_variable>
#include <optional>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "collectives/transport/tcp/tcp_connect.h"
#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring {
namespace {
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using tcp_detail::PeerSocket;

constexpr size_t kHeaderBytes = 16;
constexpr size_t kMaxChunk = size_t{8} << 20;  // bytes per read/write system call, at most
// How long a wait on a live peer goes without progress once some other peer has failed.
constexpr std::chrono::milliseconds kSurvivorGrace{1000};

// One isend or irecv. Guarded by State::mutex.
struct Op {
  int peer = 0;
  uint64_t tag = 0;
  char* data = nullptr;
  size_t bytes = 0;
  bool done = false;
  bool in_flight = false;  // the I/O thread is moving its bytes now
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
  bool failed = false;
  std::string failure;
  Clock::time_point last_progress = Clock::now();
  // Receiving: the frame being read and where its payload goes.
  uint64_t header[2] = {0, 0};
  std::map<uint64_t, std::deque<OpPtr>> posted;               // receives not yet matched
  std::map<uint64_t, std::deque<std::vector<char>>> arrived;  // frames not yet received
  OpPtr reading;              // the receive being filled, or null
  std::vector<char> spill;    // the payload being read when no receive was posted
  bool discard = false;       // the spill belongs to a receive that failed its size check
  size_t read_offset = 0;
  // Sending, in isend order; the front is being written when `writing`.
  std::deque<OpPtr> sends;
  bool writing = false;
};

std::string size_mismatch(int rank, int peer, uint64_t tag, size_t sent, size_t expected) {
  return str_cat("rank ", rank, " expected ", expected, " bytes from rank ", peer, " (tag ",
                 tag, ") but ", sent, " arrived; the ranks are not calling the same ",
                 "collective with the same sizes (tcp transport)");
}

// Everything the I/O thread and the callers share. The io_context is declared first so
// that it outlives the sockets.
struct State {
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<Peer> peers;
  int rank = 0;
  std::string first_failure;  // the first peer failure, for waits on the survivors
  bool aborted = false;       // Transport::abort was called

  // --- receiving (I/O thread, mutex held) ---
  void read_header(int p) {
    Peer& peer = peers[p];
    asio::async_read(*peer.connection.socket, asio::buffer(peer.header, kHeaderBytes),
                     [this, p](const boost::system::error_code& error, size_t) {
                       std::lock_guard<std::mutex> lock(mutex);
                       if (peers[p].failed) return;
                       if (error) return fail(p, error);
                       on_header(p);
                     });
  }

  void on_header(int p) {
    Peer& peer = peers[p];
    peer.last_progress = Clock::now();
    uint64_t tag = peer.header[0];
    size_t bytes = peer.header[1];
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
        return read_body(p);
      }
      op->fail(ErrorKind::kFailedPrecondition, size_mismatch(rank, p, tag, bytes, op->bytes));
      changed.notify_all();
      peer.discard = true;
    }
    peer.spill.assign(bytes, 0);
    read_body(p);
  }

  void read_body(int p) {
    Peer& peer = peers[p];
    char* target = peer.reading ? peer.reading->data : peer.spill.data();
    size_t bytes = peer.header[1];
    if (peer.read_offset == bytes) return finish_body(p);
    size_t chunk = std::min(bytes - peer.read_offset, kMaxChunk);
    peer.connection.socket->async_read_some(
        asio::buffer(target + peer.read_offset, chunk),
        [this, p](const boost::system::error_code& error, size_t moved) {
          std::lock_guard<std::mutex> lock(mutex);
          if (peers[p].failed) return;
          if (error) return fail(p, error);
          peers[p].read_offset += moved;
          peers[p].last_progress = Clock::now();
          read_body(p);
        });
  }

  void finish_body(int p) {
    Peer& peer = peers[p];
    if (peer.reading) {
      peer.reading->in_flight = false;
      peer.reading->done = true;
      peer.reading.reset();
      changed.notify_all();
    } else if (!peer.discard) {
      deliver_or_keep(p, peer.header[0], std::move(peer.spill));
    }
    peer.spill = {};
    read_header(p);
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

  // --- sending ---
  // The caller's fast path (mutex held; only when nothing is queued for p, so no write to
  // p's socket is under way): writes as much of the frame as the socket takes now,
  // without blocking and without handing the send to the I/O thread and waking the caller
  // back. Whatever does not fit (or an error, which the I/O thread then reports) is left
  // for start_write, which resumes at op.moved.
  void write_now(int p, Op& op) {
    Peer& peer = peers[p];
    iovec parts[2] = {{op.header, kHeaderBytes}, {op.data, op.bytes}};
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = op.bytes > 0 ? 2 : 1;
    ssize_t moved = ::sendmsg(peer.connection.socket->native_handle(), &message,
                              MSG_DONTWAIT | MSG_NOSIGNAL);
    if (moved <= 0) return;
    peer.last_progress = Clock::now();
    op.moved = static_cast<size_t>(moved);
    if (op.moved == kHeaderBytes + op.bytes) op.done = true;
  }

  // --- sending (I/O thread, mutex held) ---
  void start_write(int p) {
    Peer& peer = peers[p];
    if (peer.failed || peer.writing || peer.sends.empty()) return;
    // (the front may be partly written already by write_now: write_some resumes at moved)
    peer.writing = true;
    peer.sends.front()->in_flight = true;
    write_some(p);
  }

  void write_some(int p) {
    Peer& peer = peers[p];
    Op& op = *peer.sends.front();
    std::array<asio::const_buffer, 2> buffers;
    if (op.moved < kHeaderBytes) {
      buffers[0] = asio::buffer(reinterpret_cast<char*>(op.header) + op.moved,
                                kHeaderBytes - op.moved);
      buffers[1] = asio::buffer(op.data, std::min(op.bytes, kMaxChunk));
    } else {
      size_t offset = op.moved - kHeaderBytes;
      buffers[0] = asio::buffer(op.data + offset, std::min(op.bytes - offset, kMaxChunk));
      buffers[1] = asio::const_buffer();
    }
    peer.connection.socket->async_write_some(
        buffers, [this, p](const boost::system::error_code& error, size_t moved) {
          std::lock_guard<std::mutex> lock(mutex);
          Peer& peer = peers[p];
          if (peer.failed) return;
          if (error) return fail(p, error);
          peer.last_progress = Clock::now();
          Op& op = *peer.sends.front();
          op.moved += moved;
          if (op.moved < kHeaderBytes + op.bytes) return write_some(p);
          op.in_flight = false;
          op.done = true;
          peer.sends.pop_front();
          peer.writing = false;
          changed.notify_all();
          start_write(p);
        });
  }

  // --- failure (I/O thread, mutex held) ---
  void fail(int p, const boost::system::error_code& error) {
    bool closed = error == asio::error::eof || error == asio::error::connection_reset ||
                  error == asio::error::broken_pipe;
    std::string where = str_cat("rank ", p, " (at ", peers[p].connection.address, ")");
    fail(p, closed ? str_cat(where, " closed its connection to rank ", rank, " (",
                             error.message(), "): its process exited or was killed; see ",
                             "that rank's log for why")
                   : str_cat("the connection from rank ", rank, " to ", where, " failed: ",
                             error.message()));
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
    peer.writing = false;
    boost::system::error_code ignored;
    if (peer.connection.socket) peer.connection.socket->close(ignored);
    changed.notify_all();
  }
};

class TcpRequest : public Request {
 public:
  TcpRequest(std::shared_ptr<State> state, OpPtr op, bool send)
      : state_(std::move(state)), op_(std::move(op)), send_(send) {}

  ~TcpRequest() override {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (op_->done) return;
    Peer& peer = state_->peers[op_->peer];
    if (!op_->in_flight && op_->moved == 0) {  // not started: withdraw it
      if (send_) {
        std::erase(peer.sends, op_);
      } else {
        auto found = peer.posted.find(op_->tag);
        if (found != peer.posted.end()) std::erase(found->second, op_);
        if (found != peer.posted.end() && found->second.empty()) peer.posted.erase(found);
      }
      return;
    }
    // Its bytes are moving: let it finish briefly, else drop the connection so that the
    // I/O thread stops touching the buffer.
    if (state_->changed.wait_for(lock, std::chrono::seconds(2), [&] { return op_->done; })) return;
    int p = op_->peer;
    State* state = state_.get();
    asio::post(state->io, [state, p] {
      std::lock_guard<std::mutex> inner(state->mutex);
      state->fail(p, str_cat("rank ", state->rank, " abandoned a transfer with rank ", p));
    });
    state_->changed.wait(lock, [&] { return op_->done; });
  }

  void wait(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(state_->mutex);
    auto start = Clock::now();
    while (!op_->done) {
      check_aborted();
      Peer& peer = state_->peers[op_->peer];
      auto last = std::max(start, peer.last_progress);
      auto deadline = last + timeout;
      if (!state_->first_failure.empty()) {
        // Another rank is gone: the group cannot finish a collective, so do not wait the
        // whole timeout for a peer that is probably waiting on the dead one too.
        if (Clock::now() >= last + kSurvivorGrace) {
          PR_FAIL(kDisconnected, state_->first_failure, " (rank ", state_->rank,
                  " stopped waiting for rank ", op_->peer, ")");
        }
        deadline = std::min(deadline, last + kSurvivorGrace);
      }
      if (Clock::now() >= deadline) {
        PR_FAIL(kTimeout, "rank ", state_->rank, " waited ", timeout.count(), " ms to ",
                send_ ? "send to" : "receive from", " rank ", op_->peer, " (at ",
                peer.connection.address, "; tag ", op_->tag, ", ", op_->bytes,
                " bytes) with no progress; is rank ", op_->peer,
                " alive and calling the same collective? (tcp transport)");
      }
      state_->changed.wait_until(lock, deadline);
    }
    if (!op_->error.empty()) throw Error(op_->kind, op_->error);
  }

  bool test() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    check_aborted();
    if (op_->done && !op_->error.empty()) throw Error(op_->kind, op_->error);
    return op_->done;
  }

 private:
  void check_aborted() const {  // mutex held
    if (state_->aborted) {
      throw Error(ErrorKind::kFailedPrecondition,
                  transport_aborted_message(state_->rank, op_->peer, "tcp"));
    }
  }

  std::shared_ptr<State> state_;
  OpPtr op_;
  bool send_;
};

class TcpTransport : public Transport {
 public:
  TcpTransport(std::shared_ptr<State> state, int size) : state_(std::move(state)), size_(size) {
    state_->work.emplace(state_->io.get_executor());
    for (int p = 0; p < size_; ++p) {
      if (p != state_->rank) state_->read_header(p);  // only this thread runs io yet
    }
    state_->thread = std::thread([state = state_.get()] { state->io.run(); });
  }

  ~TcpTransport() override {
    state_->work.reset();
    state_->io.stop();
    state_->thread.join();
    std::lock_guard<std::mutex> lock(state_->mutex);
    for (int p = 0; p < size_; ++p) {
      if (p != state_->rank) state_->fail(p, str_cat("rank ", state_->rank, "'s transport was closed"));
    }
  }

  int rank() const override { return state_->rank; }
  int size() const override { return size_; }
  void abort() override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->aborted = true;
    state_->changed.notify_all();
  }
  std::string name() const override { return "tcp"; }

  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override {
    OpPtr op = make_op(peer, const_cast<void*>(data), bytes, tag);
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (peer == state_->rank) {
      const char* begin = static_cast<const char*>(data);
      state_->deliver_or_keep(peer, tag, std::vector<char>(begin, begin + bytes));
      op->done = true;
    } else if (state_->peers[peer].failed) {
      op->fail(ErrorKind::kDisconnected, state_->peers[peer].failure);
    } else {
      op->header[0] = tag;
      op->header[1] = bytes;
      Peer& to = state_->peers[peer];
      if (!to.writing && to.sends.empty()) {
        state_->write_now(peer, *op);
        if (op->done) return std::make_unique<TcpRequest>(state_, std::move(op), true);
      }
      to.sends.push_back(op);
      State* state = state_.get();
      asio::post(state->io, [state, peer] {
        std::lock_guard<std::mutex> inner(state->mutex);
        state->start_write(peer);
      });
    }
    return std::make_unique<TcpRequest>(state_, std::move(op), true);
  }

  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override {
    OpPtr op = make_op(peer, data, bytes, tag);
    std::lock_guard<std::mutex> lock(state_->mutex);
    Peer& from = state_->peers[peer];
    auto found = from.arrived.find(tag);
    if (found != from.arrived.end()) {
      state_->complete_from(*op, found->second.front());
      found->second.pop_front();
      if (found->second.empty()) from.arrived.erase(found);
    } else if (from.failed) {
      op->fail(ErrorKind::kDisconnected, from.failure);
    } else {
      from.posted[tag].push_back(op);
    }
    return std::make_unique<TcpRequest>(state_, std::move(op), false);
  }

 private:
  OpPtr make_op(int peer, void* data, size_t bytes, uint64_t tag) const {
    PR_CHECK(peer >= 0 && peer < size_) << "peer " << peer << " outside a group of " << size_;
    auto op = std::make_shared<Op>();
    op->peer = peer;
    op->tag = tag;
    op->data = static_cast<char*>(data);
    op->bytes = bytes;
    return op;
  }

  std::shared_ptr<State> state_;
  int size_;
};

}  // namespace

std::unique_ptr<Transport> make_tcp_transport(Store& store, int rank, int size,
                                              const TcpTransportOptions& options) {
  PR_CHECK(size >= 1 && rank >= 0 && rank < size) << "rank " << rank << " of " << size;
  auto state = std::make_shared<State>();
  state->rank = rank;
  std::vector<PeerSocket> sockets = tcp_detail::connect_peers(state->io, store, rank, size, options);
  state->peers.resize(size);
  for (int p = 0; p < size; ++p) state->peers[p].connection = std::move(sockets[p]);
  return std::make_unique<TcpTransport>(std::move(state), size);
}

}  // namespace petaring
