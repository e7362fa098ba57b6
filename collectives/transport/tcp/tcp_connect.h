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
  std::unique_ptr<boost::asio::ip::tcp::socket> socket;  // null for the rank itself
  std::string address;  // "ip:port on host NAME" of the peer, for error messages
};

// Returns one connected, configured socket per peer (element `rank` is empty), bound to
// `io`. Blocks until every peer is connected; throws kTimeout naming a missing rank.
std::vector<PeerSocket> connect_peers(boost::asio::io_context& io, Store& store, int rank,
                                      int size, const TcpTransportOptions& options);

}  // namespace petaring::tcp_detail
