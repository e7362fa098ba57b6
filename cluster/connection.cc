#include "cluster/connection.h"

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>

#include <thread>

#include "cluster/auth.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace asio = boost::asio;
using asio::ip::tcp;

struct Connection::State {
  asio::io_context io;
  tcp::socket socket{io};
  std::string address;
  std::chrono::milliseconds read_timeout{0};

  // Fills `buffer` before `deadline` (none when read_timeout is 0). Returns the read's
  // error; on timeout closes the socket and throws kTimeout.
  boost::system::error_code read(asio::mutable_buffer buffer, std::chrono::steady_clock::time_point deadline) {
    if (read_timeout.count() == 0) {
      boost::system::error_code ec;
      asio::read(socket, buffer, ec);
      return ec;
    }
    boost::system::error_code result;
    bool done = false;
    asio::async_read(socket, buffer, [&](const boost::system::error_code& ec, size_t) {
      result = ec;
      done = true;
    });
    io.restart();
    io.run_until(deadline);
    if (!done) {
      boost::system::error_code ignored;
      socket.close(ignored);  // the read completes with operation_aborted
      io.restart();
      io.run();
      PR_FAIL(kTimeout, "the coordinator at ", address, " did not answer within ", read_timeout.count(),
              " ms; it may be hung or overloaded (check its log), or pass a longer --timeout-ms");
    }
    return result;
  }
};

namespace {

kj::ArrayPtr<const kj::byte> bytes_of(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}
std::string string_of(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

ErrorKind kind_from_name(const std::string& name) {
  for (ErrorKind kind : {ErrorKind::kInvalidArgument, ErrorKind::kNotFound, ErrorKind::kOutOfMemory,
                         ErrorKind::kDisconnected, ErrorKind::kTimeout, ErrorKind::kUnimplemented,
                         ErrorKind::kPermissionDenied, ErrorKind::kFailedPrecondition}) {
    if (error_kind_name(kind) == name) return kind;
  }
  return ErrorKind::kInternal;
}

}  // namespace

Connection::Connection(const ConnectOptions& options) : state_(std::make_unique<State>()) {
  state_->address = options.address;
  state_->read_timeout = options.read_timeout;
  std::string host;
  int port = 0;
  split_host_port(options.address, "coordinator address", &host, &port);
  auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  tcp::resolver resolver(state_->io);
  for (;;) {
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (!ec) asio::connect(state_->socket, endpoints, ec);
    if (!ec) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      PR_FAIL(kTimeout, "cannot reach the coordinator at ", options.address, " (", ec.message(),
              "); is `petaring coordinator` running there?");
    }
    state_->socket = tcp::socket(state_->io);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  state_->socket.set_option(tcp::no_delay(true));
  auto challenge = read_frame();
  if (!challenge->envelope().isChallenge()) {
    PR_FAIL(kPermissionDenied, "coordinator at ", options.address, " sent ", challenge->kind(),
            " instead of a challenge");
  }
  std::string nonce = string_of(challenge->envelope().getChallenge().getNonce());
  std::string client_nonce = random_bytes(kNonceBytes);
  capnp::MallocMessageBuilder message;
  auto hello = message.initRoot<wire::Envelope>().initHello();
  hello.setRole(options.role);
  hello.setName(options.name);
  hello.setClientNonce(bytes_of(client_nonce));
  hello.setMac(bytes_of(hello_mac(options.key, options.role, options.name, nonce)));
  std::unique_ptr<Frame> welcome;
  try {
    welcome = call(message);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kDisconnected) throw;
    if (options.role == wire::Role::RANK) {
      PR_FAIL(kPermissionDenied, "the coordinator at ", options.address, " refused rank of job attempt ",
              options.name, ": its job token is wrong (a rank can only join its own job attempt, with the ",
              "token its worker was given)");
    }
    PR_FAIL(kPermissionDenied, "the coordinator at ", options.address,
            " refused this connection: check that --secret-file holds the pool's secret");
  }
  if (!welcome->envelope().isWelcome() ||
      !equal_in_constant_time(string_of(welcome->envelope().getWelcome().getMac()),
                              welcome_mac(options.key, client_nonce))) {
    PR_FAIL(kPermissionDenied, "the server at ", options.address,
            " did not prove it holds the pool secret; is it the right coordinator?");
  }
}

Connection::~Connection() {
  boost::system::error_code ignored;
  state_->socket.close(ignored);
}

void Connection::send_bytes(const std::string& bytes) {
  boost::system::error_code ec;
  asio::write(state_->socket, asio::buffer(bytes), ec);
  if (ec) PR_FAIL(kDisconnected, "lost the connection to ", state_->address, ": ", ec.message());
}

std::unique_ptr<Frame> Connection::read_frame() {
  auto deadline = std::chrono::steady_clock::now() + state_->read_timeout;
  uint8_t header[kFrameHeaderBytes];
  boost::system::error_code ec = state_->read(asio::buffer(header), deadline);
  if (ec) {
    PR_FAIL(kDisconnected, "the coordinator at ", state_->address, " closed the connection (",
            ec.message(), ")");
  }
  uint32_t length = decode_frame_header(header);
  std::vector<uint8_t> payload(length);
  ec = state_->read(asio::buffer(payload), deadline);
  if (ec) PR_FAIL(kDisconnected, "the coordinator at ", state_->address, " closed mid-frame");
  return std::make_unique<Frame>(payload.data(), payload.size());
}

std::unique_ptr<Frame> Connection::call(capnp::MessageBuilder& request) {
  send_bytes(encode_frame(request));
  auto reply = read_frame();
  if (reply->envelope().isFailure()) {
    auto failure = reply->envelope().getFailure();
    throw Error(kind_from_name(failure.getKind()), failure.getMessage());
  }
  return reply;
}

std::string Connection::local_ip() const {
  boost::system::error_code ec;
  auto endpoint = state_->socket.local_endpoint(ec);
  return ec ? std::string() : endpoint.address().to_string();
}

}  // namespace petaring::cluster
