#include "collectives/transport/tcp/tcp_connect.h"

#include <limits.h>
#include <unistd.h>

#include <thread>

#include "runtime/error.h"

namespace petaring::tcp_detail {
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kHelloMagic = 0x50524e47;  // "PRNG"

struct Hello {
  uint32_t magic;
  uint32_t rank;
  // 0: the connecting (lower) rank sends on it; 1: the accepting rank sends on it (only
  // with socket_per_direction).
  uint32_t direction;
};

void configure(tcp::socket& socket, const TcpTransportOptions& options) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::send_buffer_size(options.socket_buffer_bytes), ignored);
  socket.set_option(asio::socket_base::receive_buffer_size(options.socket_buffer_bytes), ignored);
}

std::chrono::milliseconds left(Clock::time_point deadline) {
  auto rest = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(rest, std::chrono::milliseconds(1));
}

// Connects to `peer` at `address` (retrying until the deadline) and says hello.
std::unique_ptr<tcp::socket> connect_to(asio::io_context& io, int rank, int peer,
                                        const std::string& address, Clock::time_point deadline,
                                        const TcpTransportOptions& options, uint32_t direction) {
  size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
  auto socket = std::make_unique<tcp::socket>(io);
  tcp::resolver resolver(io);
  boost::system::error_code error;
  while (true) {
    auto endpoints = resolver.resolve(host, port, error);
    if (!error) asio::connect(*socket, endpoints, error);
    if (!error) break;
    if (Clock::now() >= deadline) {
      PR_FAIL(kTimeout, "rank ", rank, " could not connect to rank ", peer, " at ", address,
              ": ", error.message(), "; is that address reachable from this host?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  configure(*socket, options);
  Hello hello{kHelloMagic, static_cast<uint32_t>(rank), direction};
  asio::write(*socket, asio::buffer(&hello, sizeof(hello)), error);
  if (error) {
    PR_FAIL(kDisconnected, "rank ", rank, " lost its new connection to rank ", peer, " at ",
            address, ": ", error.message());
  }
  return socket;
}

}  // namespace

std::vector<PeerSocket> connect_peers(asio::io_context& io, Store& store, int rank, int size,
                                      const TcpTransportOptions& options) {
  auto deadline = Clock::now() + options.connect_timeout;
  // Listen only on the interface the other ranks are told to use, not on every one.
  boost::system::error_code parse_error;
  auto bind_address = asio::ip::make_address_v4(options.advertise_host, parse_error);
  if (parse_error) bind_address = asio::ip::address_v4::any();
  tcp::acceptor acceptor(io, tcp::endpoint(bind_address, 0));
  acceptor.listen(asio::socket_base::max_listen_connections);
  std::string mine = str_cat(options.advertise_host, ":", acceptor.local_endpoint().port());
  // The host name first: whoever reads "tcp/<rank>" finds it published.
  store.set(str_cat("tcp/host/", rank), local_host_name());
  store.set(str_cat("tcp/", rank), mine);
  // "127.0.0.1:4000 on host node7": how errors name a peer.
  auto where = [&](int peer, const std::string& address) {
    return str_cat(address, " on host ", store.get(str_cat("tcp/host/", peer), left(deadline)));
  };

  std::vector<PeerSocket> peers(size);
  for (int peer = rank + 1; peer < size; ++peer) {
    std::string address;
    try {
      address = store.get(str_cat("tcp/", peer), left(deadline));
    } catch (const Error& error) {
      if (error.kind() != ErrorKind::kTimeout) throw;
      PR_FAIL(kTimeout, "rank ", rank, " waited ", options.connect_timeout.count(),
              " ms for rank ", peer, " to publish its address; did rank ", peer,
              " start? (", error.what(), ")");
    }
    if (options.socket_per_direction) {
      peers[peer].out = connect_to(io, rank, peer, address, deadline, options, 0);
      peers[peer].socket = connect_to(io, rank, peer, address, deadline, options, 1);
    } else {
      peers[peer].socket = connect_to(io, rank, peer, address, deadline, options, 0);
    }
    peers[peer].address = where(peer, address);
  }

  acceptor.non_blocking(true);
  const int expected = options.socket_per_direction ? 2 * rank : rank;
  auto complete = [&](int peer) {
    return peers[peer].socket && (!options.socket_per_direction || peers[peer].out);
  };
  for (int accepted = 0; accepted < expected;) {
    auto socket = std::make_unique<tcp::socket>(io);
    boost::system::error_code error;
    acceptor.accept(*socket, error);
    if (error == asio::error::would_block || error == asio::error::try_again) {
      if (Clock::now() >= deadline) {
        std::string missing;
        for (int peer = 0; peer < rank; ++peer) {
          if (!complete(peer)) missing += str_cat(missing.empty() ? "" : ", ", peer);
        }
        PR_FAIL(kTimeout, "rank ", rank, " waited ", options.connect_timeout.count(),
                " ms for rank(s) ", missing, " to connect; did they start?");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    if (error) continue;
    socket->non_blocking(false, error);
    Hello hello{};
    asio::read(*socket, asio::buffer(&hello, sizeof(hello)), error);
    int peer = static_cast<int>(hello.rank);
    if (error || hello.magic != kHelloMagic || peer < 0 || peer >= rank ||
        hello.direction > (options.socket_per_direction ? 1u : 0u)) {
      continue;  // not one of ours: drop it
    }
    // Direction 0 carries the connecting rank's bytes here; direction 1 this rank's there.
    std::unique_ptr<tcp::socket>& slot =
        hello.direction == 0 ? peers[peer].socket : peers[peer].out;
    if (slot) continue;  // a duplicate
    configure(*socket, options);
    peers[peer].address = where(peer, store.get(str_cat("tcp/", peer), left(deadline)));
    slot = std::move(socket);
    ++accepted;
  }
  return peers;
}

}  // namespace petaring::tcp_detail
