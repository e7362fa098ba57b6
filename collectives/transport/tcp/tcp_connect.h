// Start-up of the TCP transport (internal): the all-to-all connection of a group through
// a store. See tcp_transport.h for the protocol.
#pragma once

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <memory>
#include <string>
#include <vector>

#include "collectives/store/store.h"
#include "collectives/transport/tcp/tcp_transport.h"

namespace petaring::tcp_detail {

struct PeerSocket {
  // The peer's bytes arrive here, and this rank's leave through it too unless `out` is
  // set (TcpTransportOptions::socket_per_direction). Null for the rank itself.
  std::unique_ptr<boost::asio::ip::tcp::socket> socket;
  std::unique_ptr<boost::asio::ip::tcp::socket> out;
  std::string address;  // "ip:port on host NAME" of the peer, for error messages
};

// Returns the connected, configured sockets of every peer (element `rank` is empty), bound
// to `io`. Blocks until every peer is connected; throws kTimeout naming a missing rank.
std::vector<PeerSocket> connect_peers(boost::asio::io_context& io, Store& store, int rank,
                                      int size, const TcpTransportOptions& options);

}  // namespace petaring::tcp_detail
