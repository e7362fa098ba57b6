// Connection: the calling side of a pool connection (workers, clients, ranks). Blocking:
// call() sends one request frame and waits for its reply. Not thread-safe; one caller.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <capnp/message.h>

#include "cluster/frame.h"
#include "cluster/pool.capnp.h"

namespace petaring::cluster {

struct ConnectOptions {
  std::string address;   // the coordinator, "host:port"
  wire::Role role = wire::Role::CLIENT;
  std::string name;      // node name (worker), anything (client), rank_name() (rank)
  std::string key;       // the pool secret, or the job token for a rank
  // Keep retrying a refused connection this long (a coordinator starting or restarting).
  std::chrono::milliseconds connect_timeout{10000};
  // Give up on a reply (the handshake's included) after this long: a hung coordinator is
  // an error (kTimeout), not a wait forever. 0 = wait forever.
  std::chrono::milliseconds read_timeout{30000};
};

class Connection {
 public:
  // Connects and runs the handshake. Throws kTimeout naming the address when nothing
  // answers in time, kPermissionDenied when the coordinator rejects the key (or does not
  // prove it holds it), kDisconnected when it closes the connection.
  explicit Connection(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends `request` and returns the reply. A Failure reply is thrown as an Error of its
  // kind; a closed connection is kDisconnected; no reply within read_timeout is kTimeout
  // (the connection is closed then: later calls are kDisconnected).
  std::unique_ptr<Frame> call(capnp::MessageBuilder& request);

  // This end's IP address on the connection (the interface towards the coordinator).
  std::string local_ip() const;

  // Raw access for tests that send broken bytes.
  void send_bytes(const std::string& bytes);
  std::unique_ptr<Frame> read_frame();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace petaring::cluster
