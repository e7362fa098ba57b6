#include "collectives/store/tcp_store.h"

#include <sys/socket.h>

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <condition_variable>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

enum Op : uint8_t { kSet = 1, kGet = 2, kAdd = 3 };
enum Status : uint8_t { kOk = 0, kMissing = 1, kBadRequest = 2 };

void write_string(tcp::socket& socket, const std::string& text) {
  uint64_t length = text.size();
  std::array<asio::const_buffer, 2> buffers{asio::buffer(&length, sizeof(length)),
                                            asio::buffer(text)};
  asio::write(socket, buffers);
}

std::string read_string(tcp::socket& socket) {
  uint64_t length = 0;
  asio::read(socket, asio::buffer(&length, sizeof(length)));
  if (length > (uint64_t{1} << 32)) throw std::runtime_error("store message too long");
  std::string text(length, '\0');
  asio::read(socket, asio::buffer(text));
  return text;
}

uint8_t read_byte(tcp::socket& socket) {
  uint8_t byte = 0;
  asio::read(socket, asio::buffer(&byte, 1));
  return byte;
}

void write_byte(tcp::socket& socket, uint8_t byte) { asio::write(socket, asio::buffer(&byte, 1)); }

bool parse_int64(const std::string& text, int64_t* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *value = parsed;
  return true;
}

}  // namespace

void split_host_port(const std::string& address, const char* what, std::string* host,
                     int* port) {
  size_t colon = address.rfind(':');
  int64_t value = 0;
  if (colon == std::string::npos || colon == 0 ||
      !parse_int64(address.substr(colon + 1), &value) || value <= 0 || value > 65535) {
    PR_FAIL(kInvalidArgument, what, " '", address, "' is not host:port (for example ",
            "127.0.0.1:29500)");
  }
  *host = address.substr(0, colon);
  *port = static_cast<int>(value);
}

// ---------------------------------------------------------------------------------------
// Server

struct TcpStoreServer::State {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, std::string> table;
  bool stopping = false;
  std::list<std::shared_ptr<tcp::socket>> clients;
  std::list<std::thread> threads;
  std::thread accept_thread;

  void accept_loop() {
    while (true) {
      auto socket = std::make_shared<tcp::socket>(io);
      boost::system::error_code error;
      acceptor.accept(*socket, error);
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping) return;
      if (error) continue;
      socket->set_option(tcp::no_delay(true), error);
      clients.push_back(socket);
      threads.emplace_back([this, socket] { serve(*socket); });
    }
  }

  // Answers one client's requests until it disconnects or the server stops.
  void serve(tcp::socket& socket) {
    try {
      while (true) {
        uint8_t op = read_byte(socket);
        std::string key = read_string(socket);
        std::string value = read_string(socket);
        std::string reply;
        uint8_t status = handle(op, key, value, &reply);
        write_byte(socket, status);
        write_string(socket, reply);
      }
    } catch (const std::exception&) {
      // The client went away (or the server is stopping): nothing to answer.
    }
  }

  uint8_t handle(uint8_t op, const std::string& key, const std::string& value,
                 std::string* reply) {
    std::unique_lock<std::mutex> lock(mutex);
    if (op == kSet) {
      table[key] = value;
      changed.notify_all();
      return kOk;
    }
    int64_t number = 0;
    if (!parse_int64(value, &number)) {
      *reply = "malformed number '" + value + "'";
      return kBadRequest;
    }
    if (op == kGet) {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(number);
      bool found = changed.wait_until(lock, deadline,
                                      [&] { return stopping || table.count(key) > 0; });
      if (!found || stopping) return kMissing;
      *reply = table[key];
      return kOk;
    }
    if (op == kAdd) {
      int64_t current = 0;
      auto found = table.find(key);
      if (found != table.end() && !parse_int64(found->second, &current)) {
        *reply = "key '" + key + "' does not hold a counter";
        return kBadRequest;
      }
      *reply = std::to_string(current + number);
      table[key] = *reply;
      changed.notify_all();
      return kOk;
    }
    *reply = "unknown operation " + std::to_string(op);
    return kBadRequest;
  }
};

TcpStoreServer::TcpStoreServer(int port, const std::string& bind_host)
    : state_(std::make_unique<State>()) {
  boost::system::error_code error;
  auto address = asio::ip::make_address_v4(bind_host, error);
  if (error) {
    PR_FAIL(kInvalidArgument, "the store server cannot listen on '", bind_host,
            "': not an IPv4 address");
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  state_->acceptor.open(endpoint.protocol(), error);
  if (!error) state_->acceptor.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) state_->acceptor.bind(endpoint, error);
  if (!error) state_->acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    PR_FAIL(kFailedPrecondition, "the store server cannot listen on port ", port, ": ",
            error.message(), "; choose another port (--port) or 0 for any free port");
  }
  state_->accept_thread = std::thread([state = state_.get()] { state->accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
    state_->changed.notify_all();
    // shutdown() wakes threads blocked in accept() and read() on Linux.
    ::shutdown(state_->acceptor.native_handle(), SHUT_RDWR);
    for (auto& socket : state_->clients) ::shutdown(socket->native_handle(), SHUT_RDWR);
  }
  state_->accept_thread.join();
  for (auto& thread : state_->threads) thread.join();
}

int TcpStoreServer::port() const { return state_->acceptor.local_endpoint().port(); }

// ---------------------------------------------------------------------------------------
// Client

struct TcpStore::State {
  std::string address;
  asio::io_context io;
  tcp::socket socket{io};
  std::mutex mutex;

  // Sends one request and returns the status and reply; errors name the address.
  uint8_t call(uint8_t op, const std::string& key, const std::string& value,
               std::string* reply) {
    std::lock_guard<std::mutex> lock(mutex);
    try {
      write_byte(socket, op);
      write_string(socket, key);
      write_string(socket, value);
      uint8_t status = read_byte(socket);
      *reply = read_string(socket);
      if (status == kBadRequest) {
        PR_FAIL(kInvalidArgument, "the store at ", address, " refused a request for key '", key,
                "': ", *reply);
      }
      return status;
    } catch (const boost::system::system_error& error) {
      PR_FAIL(kDisconnected, "lost the connection to the store at ", address, " (key '", key,
              "'): ", error.code().message(), "; did the launcher (petaring launch) exit?");
    }
  }
};

TcpStore::TcpStore(const std::string& address, std::chrono::milliseconds connect_timeout)
    : state_(std::make_unique<State>()) {
  state_->address = address;
  std::string host;
  int port = 0;
  split_host_port(address, "the store address", &host, &port);
  auto deadline = std::chrono::steady_clock::now() + connect_timeout;
  tcp::resolver resolver(state_->io);
  boost::system::error_code error;
  while (true) {
    auto endpoints = resolver.resolve(host, std::to_string(port), error);
    if (!error) asio::connect(state_->socket, endpoints, error);
    if (!error) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      PR_FAIL(kTimeout, "could not reach the store at ", address, " within ",
              connect_timeout.count(), " ms: ", error.message(),
              "; is the launcher (petaring launch) running, and is PETARING_STORE right?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  state_->socket.set_option(tcp::no_delay(true), error);
}

TcpStore::~TcpStore() = default;

void TcpStore::set(const std::string& key, const std::string& value) {
  std::string reply;
  state_->call(kSet, key, value, &reply);
}

std::string TcpStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  std::string reply;
  if (state_->call(kGet, key, std::to_string(timeout.count()), &reply) != kOk) {
    PR_FAIL(kTimeout, "key '", key, "' did not appear in the store at ", state_->address,
            " within ", timeout.count(), " ms; did every rank start?");
  }
  return reply;
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  std::string reply;
  state_->call(kAdd, key, std::to_string(delta), &reply);
  int64_t value = 0;
  parse_int64(reply, &value);
  return value;
}

const std::string& TcpStore::address() const { return state_->address; }

std::string TcpStore::local_ip() const {
  boost::system::error_code error;
  auto endpoint = state_->socket.local_endpoint(error);
  return error ? std::string("127.0.0.1") : endpoint.address().to_string();
}

}  // namespace petaring
