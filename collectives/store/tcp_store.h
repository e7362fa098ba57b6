// TCP store: one server holds the table in memory; clients reach it over TCP.
//
// The server (TcpStoreServer) runs on threads of the process that owns it (the launcher,
// `petaring launch`, or rank 0): an accept thread and one thread per client connection.
// A client (TcpStore) keeps one connection; its calls are serialized by a mutex. Messages
// are length-prefixed: request [u8 op][u64 n][key][u64 n][value], reply
// [u8 status][u64 n][bytes]. A get waits on the server, so a blocked get costs no traffic.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collectives/store/store.h"

namespace petaring {

class TcpStoreServer {
 public:
  // Listens on `port` (0: an ephemeral port, see port()) at the IPv4 address `bind_host`
  // (loopback by default: the store has no authentication yet, so it is reachable from
  // this host only unless a caller asks otherwise); serves until destroyed. Throws
  // kFailedPrecondition naming the port when it cannot listen.
  explicit TcpStoreServer(int port, const std::string& bind_host = "127.0.0.1");
  ~TcpStoreServer();  // closes every connection and joins the server's threads
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

class TcpStore : public Store {
 public:
  // Connects to `address` ("host:port"), retrying for `connect_timeout` while the server
  // is not up yet; throws kInvalidArgument for a malformed address and kTimeout naming the
  // address when nothing answers in time.
  explicit TcpStore(const std::string& address,
                    std::chrono::milliseconds connect_timeout = std::chrono::seconds(60));
  ~TcpStore() override;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  int64_t add(const std::string& key, int64_t delta) override;

  const std::string& address() const;
  // This end's IP address on the connection to the server: the interface through which
  // this host reaches the server, a good address to advertise to other ranks.
  std::string local_ip() const override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Splits "host:port"; throws kInvalidArgument naming `what` and the text when malformed.
void split_host_port(const std::string& address, const char* what, std::string* host,
                     int* port);

}  // namespace petaring
