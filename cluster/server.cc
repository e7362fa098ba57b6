#include "cluster/server.h"

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <kj/exception.h>

#include <atomic>
#include <set>
#include <thread>

#include "cluster/auth.h"
#include "cluster/frame.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring::cluster {
namespace asio = boost::asio;
using asio::ip::tcp;

struct Server::State {
  ServerOptions options;
  Handler* handler = nullptr;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::atomic<int64_t> rejected{0};
  std::string bound_host;
  int bound_port = 0;
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Server::State* server)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), server_(server) {
    boost::system::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    peer_.address = ec ? "?" : str_cat(remote.address().to_string(), ":", remote.port());
  }

  void start() {
    nonce_ = random_bytes(kNonceBytes);
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().initChallenge().setNonce(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(nonce_.data()), nonce_.size()));
    timer_.expires_after(server_->options.handshake_timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && !self->authenticated_) self->reject("no handshake within the deadline");
    });
    write(encode_frame(message));
  }

 private:
  void write(std::string frame) {
    out_ = std::move(frame);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->read_header();
                      });
  }

  void read_header() {
    asio::async_read(socket_, asio::buffer(header_),
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       if (ec) return self->closed(ec);
                       self->on_header();
                     });
  }

  void on_header() {
    uint32_t max = server_->options.max_payload ? server_->options.max_payload : kMaxPayloadBytes;
    uint32_t length = 0;
    try {
      length = decode_frame_header(header_, max);
    } catch (const Error& e) {
      return reject(e.what());
    }
    payload_.resize(length);
    asio::async_read(socket_, asio::buffer(payload_),
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       if (ec) return self->closed(ec);
                       self->on_payload();
                     });
  }

  void on_payload() {
    std::unique_ptr<Frame> frame;
    try {
      frame = std::make_unique<Frame>(payload_.data(), payload_.size());
    } catch (const Error& e) {
      return reject(e.what());
    }
    std::string reply;
    try {
      reply = authenticated_ ? answer(*frame) : handshake(*frame);
    } catch (const Error& e) {
      return reject(e.what());
    } catch (const kj::Exception& e) {
      return reject(str_cat("malformed request: ", e.getDescription().cStr()));
    }
    write(std::move(reply));
  }

  std::string handshake(const Frame& frame) {
    auto envelope = frame.envelope();
    if (!envelope.isHello()) {
      PR_FAIL(kPermissionDenied, "expected hello, got ", frame.kind());
    }
    auto hello = envelope.getHello();
    peer_.role = hello.getRole();
    peer_.name = hello.getName();
    std::string key = server_->options.secret;
    if (peer_.role == wire::Role::RANK) {
      if (!parse_rank_name(peer_.name, &peer_.job_id, &peer_.attempt)) {
        PR_FAIL(kPermissionDenied, "rank name '", peer_.name, "' is not JOB.ATTEMPT");
      }
      key = job_token(server_->options.secret, peer_.job_id, peer_.attempt);
    } else if (peer_.role != wire::Role::WORKER && peer_.role != wire::Role::CLIENT) {
      PR_FAIL(kPermissionDenied, "unknown role ", static_cast<int>(peer_.role));
    }
    auto mac = hello.getMac();
    std::string given(reinterpret_cast<const char*>(mac.begin()), mac.size());
    if (!equal_in_constant_time(given, hello_mac(key, peer_.role, peer_.name, nonce_))) {
      PR_FAIL(kPermissionDenied, "wrong pool secret (or job token) from '", peer_.name, "'");
    }
    auto client_nonce = hello.getClientNonce();
    if (client_nonce.size() != kNonceBytes) {
      PR_FAIL(kPermissionDenied, "client nonce of ", client_nonce.size(), " bytes");
    }
    authenticated_ = true;
    timer_.cancel();
    PR_LOG(kDebug) << "pool: " << peer_.address << " authenticated as '" << peer_.name << "'";
    std::string proof = welcome_mac(
        key, std::string(reinterpret_cast<const char*>(client_nonce.begin()), client_nonce.size()));
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().initWelcome().setMac(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(proof.data()), proof.size()));
    return encode_frame(message);
  }

  std::string answer(const Frame& frame) {
    auto which = frame.envelope().which();
    if (!server_->handler->allowed(peer_, which)) {
      PR_FAIL(kPermissionDenied, "a message of kind ", frame.kind(), " is not expected here");
    }
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<wire::Envelope>();
    try {
      server_->handler->handle(peer_, frame.envelope(), reply);
    } catch (const Error& e) {
      capnp::MallocMessageBuilder failure_message;
      auto failure = failure_message.initRoot<wire::Envelope>().initFailure();
      failure.setKind(std::string(error_kind_name(e.kind())));
      failure.setMessage(e.what());
      return encode_frame(failure_message);
    }
    return encode_frame(message);
  }

  void reject(const std::string& why) {
    server_->rejected.fetch_add(1);
    PR_LOG(kWarn) << "pool: closing connection from " << peer_.address << ": " << why;
    close();
  }

  void closed(boost::system::error_code ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
      PR_LOG(kDebug) << "pool: connection from " << peer_.address << " ended: " << ec.message();
    }
    close();
  }

  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  Server::State* server_;
  Peer peer_;
  std::string nonce_;
  bool authenticated_ = false;
  uint8_t header_[kFrameHeaderBytes];
  std::vector<uint8_t> payload_;
  std::string out_;
};

void accept_next(Server::State* state) {
  state->acceptor.async_accept([state](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      socket.set_option(tcp::no_delay(true));
      std::make_shared<Connection>(std::move(socket), state)->start();
    } else {
      PR_LOG(kWarn) << "pool: accept failed: " << ec.message();
    }
    accept_next(state);
  });
}

}  // namespace

Server::Server(ServerOptions options, Handler* handler) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  state_->handler = handler;
  std::string host;
  int port = 0;
  const std::string& listen = state_->options.listen;
  size_t colon = listen.rfind(':');
  try {
    if (colon == std::string::npos || colon == 0) throw std::invalid_argument("no host");
    host = listen.substr(0, colon);
    size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || port < 0 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    PR_FAIL(kInvalidArgument, "--listen '", listen, "' is not host:port (for example 127.0.0.1:7070; port 0 picks one)");
  }
  try {
    tcp::endpoint endpoint(asio::ip::make_address(host), static_cast<uint16_t>(port));
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
    state_->bound_host = host;
    state_->bound_port = state_->acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    PR_FAIL(kFailedPrecondition, "cannot listen on ", state_->options.listen, ": ", e.what(),
            "; pick another address or port");
  }
  accept_next(state_.get());
  state_->thread = std::thread([s = state_.get()] { s->io.run(); });
}

Server::~Server() {
  asio::post(state_->io, [s = state_.get()] {
    boost::system::error_code ignored;
    s->acceptor.close(ignored);
  });
  state_->io.stop();
  if (state_->thread.joinable()) state_->thread.join();
}

std::string Server::address() const { return str_cat(state_->bound_host, ":", state_->bound_port); }
int Server::port() const { return state_->bound_port; }
int64_t Server::rejected_connections() const { return state_->rejected.load(); }

}  // namespace petaring::cluster
