// Test helpers: a group of N transports of one kind, built inside this process, for the
// transports that can run ranks as threads (local, tcp, shm; MPI needs one process per
// rank: tests/mpi/). Header-only: the layer's test program is built from *_test.cc files
// alone.
//
//   local: make_local_transports (one shared mailbox)
//   tcp:   a TcpStoreServer on an ephemeral loopback port, one TcpStore client and one
//          TcpTransport per rank (every byte crosses real sockets)
//   shm:   a FileStore in a fresh folder under /tmp, one shm transport per rank (real
//          POSIX shared memory; the transports unlink their segments at start-up)
//
// The stores serve start-up only: once make_transport_group returns, the transports
// depend on nothing else, and the store server and folder are gone.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "collectives/store/file_store.h"
#include "collectives/store/tcp_store.h"
#include "collectives/transport/local/local_transport.h"
#include "collectives/transport/shm/shm_transport.h"
#include "collectives/transport/tcp/tcp_transport.h"
#include "runtime/error.h"
#include "tests/collectives/rank_threads.h"

namespace petaring::testing_ranks {

enum class TransportKind { kLocal, kTcp, kShm };

inline const char* transport_kind_name(TransportKind kind) {
  switch (kind) {
    case TransportKind::kLocal: return "local";
    case TransportKind::kTcp: return "tcp";
    case TransportKind::kShm: return "shm";
  }
  return "?";
}

struct TransportGroupOptions {
  // Whole start-up of the group (every rank joins within it).
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  // shm only: ring bytes per ordered pair (small rings make large messages wrap often).
  size_t shm_ring_bytes = size_t{256} << 10;
  // shm only: how waits poll and sleep (ShmTransportOptions); the defaults when unset.
  std::optional<ShmTransportOptions> shm_waits;
  // tcp only: TcpTransportOptions::socket_per_direction.
  bool tcp_socket_per_direction = true;
};

// Builds the `size` transports of a fresh group of `kind`, element i being rank i. tcp and
// shm ranks join concurrently, one thread each; throws the first rank's start-up error
// (after every rank has returned) when the group did not form.
inline std::vector<std::unique_ptr<Transport>> make_transport_group(
    TransportKind kind, int size, const TransportGroupOptions& options = {}) {
  if (kind == TransportKind::kLocal) return make_local_transports(size);
  std::vector<std::unique_ptr<Transport>> transports(size);
  std::vector<std::exception_ptr> errors(size);
  std::unique_ptr<TcpStoreServer> server;
  std::string folder;
  if (kind == TransportKind::kTcp) {
    server = std::make_unique<TcpStoreServer>(0);
  } else {
    char pattern[] = "/tmp/petaring-group-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      PR_FAIL(kPermissionDenied, "cannot create a store folder under /tmp");
    }
    folder = pattern;
  }
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        if (kind == TransportKind::kTcp) {
          TcpStore store("127.0.0.1:" + std::to_string(server->port()), options.connect_timeout);
          TcpTransportOptions tcp;
          tcp.connect_timeout = options.connect_timeout;
          tcp.socket_per_direction = options.tcp_socket_per_direction;
          transports[rank] = make_tcp_transport(store, rank, size, tcp);
        } else {
          FileStore store(folder);
          ShmTransportOptions shm = options.shm_waits.value_or(ShmTransportOptions{});
          shm.ring_bytes = options.shm_ring_bytes;
          shm.connect_timeout = options.connect_timeout;
          transports[rank] = make_shm_transport(store, rank, size, shm);
        }
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  if (!folder.empty()) std::filesystem::remove_all(folder);
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return transports;
}

// run_group (rank_threads.h) over a fresh group of `kind` and `size`.
inline std::vector<std::exception_ptr> run_ranks(
    TransportKind kind, int size, const std::function<void(Communicator&)>& fn,
    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return run_group(make_transport_group(kind, size),
                   [&](std::unique_ptr<Communicator>& comm) { fn(*comm); }, timeout);
}

}  // namespace petaring::testing_ranks
