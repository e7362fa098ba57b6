// TCP transport: ranks are threads of this process, each with its own TCP store client and
// TCP transport over loopback, so every byte crosses real sockets. The collectives over TCP
// run in the conformance suite (conformance_test.cc); these are the transport's own
// guarantees: ordering and exact sizes, large messages both ways, dead peers, timeouts.
#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/store/tcp_store.h"
#include "collectives/transport/tcp/tcp_transport.h"
#include "runtime/error.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using std::chrono::milliseconds;
using testing_ranks::error_of;
using testing_ranks::expect_no_errors;
using testing_ranks::make_transport_group;
using testing_ranks::run_group;
using testing_ranks::TransportKind;

// Runs fn(rank, communicator) on one thread per rank of a fresh TCP group of `size`
// (run_group: a rank that throws keeps its sockets until every rank has finished; fn may
// reset the communicator to close it early), with a connection per direction or one per
// pair (TcpTransportOptions::socket_per_direction).
std::vector<std::exception_ptr> run_tcp_ranks(
    int size, const std::function<void(int, std::unique_ptr<Communicator>&)>& fn,
    milliseconds timeout = milliseconds(20000), bool per_direction = true) {
  testing_ranks::TransportGroupOptions options;
  options.tcp_socket_per_direction = per_direction;
  return run_group(make_transport_group(TransportKind::kTcp, size, options),
                   [&](std::unique_ptr<Communicator>& comm) { fn(comm->rank(), comm); }, timeout);
}

// Both ways of connecting, for the tests that loop over them.
const bool kPerDirection[] = {true, false};

TEST(TcpTransport, MessagesOfOneTagArriveInOrderWithExactSizes) {
  for (bool per_direction : kPerDirection) {
    SCOPED_TRACE(per_direction ? "a connection per direction" : "one connection per pair");
    auto errors = run_tcp_ranks(2, [](int rank, std::unique_ptr<Communicator>& comm) {
      Transport& transport = comm->transport();
      if (rank == 0) {
        std::vector<int> first(1000, 1), second(10, 2), other(3, 3);
        auto a = transport.isend(1, first.data(), first.size() * sizeof(int), 5);
        auto b = transport.isend(1, second.data(), second.size() * sizeof(int), 5);
        auto c = transport.isend(1, other.data(), other.size() * sizeof(int), 9);
        for (auto* request : {a.get(), b.get(), c.get()}) request->wait(milliseconds(5000));
        auto d = transport.isend(1, first.data(), 8, 11);  // the receiver expects 4 bytes
        d->wait(milliseconds(5000));
      } else {
        std::vector<int> other(3), first(1000), second(10), small(1);
        // Posted in another order than sent: matching is per tag, in order within a tag.
        auto c = transport.irecv(0, other.data(), other.size() * sizeof(int), 9);
        c->wait(milliseconds(5000));
        auto a = transport.irecv(0, first.data(), first.size() * sizeof(int), 5);
        auto b = transport.irecv(0, second.data(), second.size() * sizeof(int), 5);
        a->wait(milliseconds(5000));
        b->wait(milliseconds(5000));
        EXPECT_EQ(first, std::vector<int>(1000, 1));
        EXPECT_EQ(second, std::vector<int>(10, 2));
        EXPECT_EQ(other, std::vector<int>(3, 3));
        auto d = transport.irecv(0, small.data(), sizeof(int), 11);
        try {
          d->wait(milliseconds(5000));
          ADD_FAILURE() << "a receive of the wrong size completed";
        } catch (const Error& error) {
          EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << error.what();
        }
      }
      comm->barrier();
    }, milliseconds(20000), per_direction);
    expect_no_errors(errors);
  }
}

TEST(TcpTransport, BothSidesSendingLargeMessagesAtOnceDoNotDeadlock) {
  constexpr size_t kBytes = size_t{32} << 20;  // far above the socket buffers
  for (bool per_direction : kPerDirection) {
    SCOPED_TRACE(per_direction ? "a connection per direction" : "one connection per pair");
    auto errors = run_tcp_ranks(2, [&](int rank, std::unique_ptr<Communicator>& comm) {
      std::vector<char> out(kBytes, static_cast<char>(rank + 1)), in(kBytes, 0);
      int peer = 1 - rank;
      auto send = comm->transport().isend(peer, out.data(), kBytes, 1);
      send->wait(milliseconds(10000));  // the send completes before the receive is posted
      auto recv = comm->transport().irecv(peer, in.data(), kBytes, 1);
      recv->wait(milliseconds(10000));
      EXPECT_EQ(in.front(), static_cast<char>(peer + 1));
      EXPECT_EQ(in.back(), static_cast<char>(peer + 1));
    }, milliseconds(20000), per_direction);
    expect_no_errors(errors);
  }
}

TEST(TcpTransport, PeerThatClosesTurnsAllreduceIntoDisconnectedNamingIt) {
  constexpr int kSize = 3, kGone = 2;
  auto start = std::chrono::steady_clock::now();
  auto errors = run_tcp_ranks(kSize, [&](int rank, std::unique_ptr<Communicator>& comm) {
    std::vector<float> data(size_t{1} << 18, 1.0f);
    comm->allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
    EXPECT_EQ(data[0], kSize);
    if (rank == kGone) {
      comm.reset();  // closes its sockets, as a killed process would
      return;
    }
    comm->allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum);
  }, milliseconds(60000));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(errors[kGone]);
  for (int rank = 0; rank < kSize; ++rank) {
    if (rank == kGone) continue;
    Error error = error_of(errors[rank]);
    EXPECT_EQ(error.kind(), ErrorKind::kDisconnected) << "rank " << rank << ": " << error.what();
    EXPECT_NE(std::string(error.what()).find("rank 2 (at 127.0.0.1:"), std::string::npos)
        << error.what();
  }
  EXPECT_LT(elapsed, milliseconds(10000)) << "the survivors waited for their 60 s timeout";
}

TEST(TcpTransport, WaitWithoutTheMatchingSendTimesOutNamingThePeer) {
  auto errors = run_tcp_ranks(2, [](int rank, std::unique_ptr<Communicator>& comm) {
    if (rank == 1) {
      int value = 0;
      auto recv = comm->transport().irecv(0, &value, sizeof(value), 77);
      recv->wait(milliseconds(200));
    }
    std::this_thread::sleep_for(milliseconds(400));  // rank 0 stays alive meanwhile
  });
  EXPECT_FALSE(errors[0]);
  Error error = error_of(errors[1]);
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_NE(std::string(error.what()).find("rank 0"), std::string::npos) << error.what();
}

TEST(TcpTransport, MissingRankTimesOutNamingItAtStartUp) {
  TcpStoreServer server(0);
  TcpStore store("127.0.0.1:" + std::to_string(server.port()));
  TcpTransportOptions options;
  options.connect_timeout = milliseconds(300);
  try {
    make_tcp_transport(store, 0, 2, options);  // rank 1 never starts
    FAIL() << "a group of 2 formed with one rank";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kTimeout);
    EXPECT_NE(std::string(error.what()).find("rank 1"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("tcp/1"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace petaring
