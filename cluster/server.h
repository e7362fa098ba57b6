// Server: the coordinator's side of pool connections (Boost.Asio, one I/O thread).
//
// Each accepted connection first runs the handshake (auth.h) within a deadline, then
// reads request frames one at a time and answers each with one reply frame. A request is
// passed to the Handler only when its role may send it (Handler::allowed). Anything wrong
// on a connection (bad frame, failed handshake, a message its role may not send, a
// handshake that does not finish in time) is logged with the peer's address and closes
// that connection only; the server keeps serving the others. An Error thrown by the
// Handler is answered with a Failure reply (kind + message) and the connection stays.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <capnp/message.h>

#include "cluster/pool.capnp.h"

namespace petaring::cluster {

// What a peer proved in its handshake.
struct Peer {
  wire::Role role = wire::Role::CLIENT;
  std::string name;
  std::string address;  // "ip:port" of the remote end
  int64_t job_id = -1;  // ranks only
  uint32_t attempt = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Whether a peer of `peer.role` may send a request of kind `which`.
  virtual bool allowed(const Peer& peer, wire::Envelope::Which which) const = 0;
  // Fills `reply` for `request`. Runs on the server's I/O thread. May throw Error.
  virtual void handle(const Peer& peer, wire::Envelope::Reader request,
                      wire::Envelope::Builder reply) = 0;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:0";   // "host:port"; port 0 picks a free one
  std::string secret;                   // the pool secret (auth.h)
  std::chrono::milliseconds handshake_timeout{5000};
  uint32_t max_payload = 0;             // 0: kMaxPayloadBytes
};

class Server {
 public:
  // Binds and starts serving on a thread of its own. Throws kFailedPrecondition naming
  // the address when it cannot listen.
  Server(ServerOptions options, Handler* handler);
  ~Server();  // stops accepting, closes every connection, joins the I/O thread
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::string address() const;  // "host:port" actually bound
  int port() const;
  // Connections closed for a protocol or auth fault since start (for tests).
  int64_t rejected_connections() const;

  struct State;  // the implementation's (server.cc)

 private:
  std::unique_ptr<State> state_;
};

}  // namespace petaring::cluster
