// A worker facing a coordinator that accepts connections and drops them at once (what a
// coordinator being killed and restarted looks like from outside): the worker keeps
// trying until its reconnect timeout, then fails with a kTimeout that names the address.
// It must not give up on the first reset. A refused handshake (a wrong secret) ends a
// first registration at once, but on a reconnect it is retried like a reset (a
// coordinator restarting may refuse before its state is back): both with real
// coordinators in this process.
#include <gtest/gtest.h>

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "cluster/client.h"
#include "cluster/coordinator.h"
#include "cluster/worker.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Accepts every connection and closes it straight away; counts them.
class DroppingListener {
 public:
  DroppingListener() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    acceptor_.non_blocking(true);
    thread_ = std::thread([this] {
      while (!stop_) {
        boost::system::error_code ec;
        tcp::socket socket(io_);
        acceptor_.accept(socket, ec);
        if (ec) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
        ++accepted_;
        socket.set_option(asio::socket_base::linger(true, 0), ec);  // close with a reset
        socket.close(ec);
      }
    });
  }
  ~DroppingListener() {
    stop_ = true;
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }
  int accepted() const { return accepted_; }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST(WorkerReconnectTest, ResetConnectionsAreRetriedUntilTheDeadline) {
  DroppingListener listener;
  WorkerOptions options;
  options.coordinator = listener.address();
  options.secret = "secret";
  options.name = "w";
  options.devices = "cpu:1";
  options.workdir = ::testing::TempDir() + "/worker-reconnect";
  options.reconnect_timeout = std::chrono::milliseconds(600);
  Worker worker(options);
  try {
    worker.run();
    ADD_FAILURE() << "registered with a listener that drops every connection";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << e.what();
    std::string message = e.what();
    EXPECT_NE(message.find(listener.address()), std::string::npos) << message;
    EXPECT_NE(message.find("stayed unreachable for 600 ms"), std::string::npos) << message;
  }
  EXPECT_GE(listener.accepted(), 2) << "the first reset ended the worker instead of a retry";
}

// A coordinator in this process, serving `listen` with `secret`, its state in `dir`.
std::unique_ptr<Coordinator> start_coordinator(const std::string& listen, const std::string& secret,
                                               const std::filesystem::path& dir) {
  CoordinatorOptions options;
  options.listen = listen;
  options.state_path = (dir / "state.db").string();
  options.secret = secret;
  options.heartbeat_timeout = std::chrono::minutes(5);
  return std::make_unique<Coordinator>(options);
}

WorkerOptions worker_options(const std::string& coordinator, const std::string& secret,
                             std::chrono::milliseconds reconnect_timeout) {
  WorkerOptions options;
  options.coordinator = coordinator;
  options.secret = secret;
  options.name = "w";
  options.devices = "cpu:1";
  options.workdir = ::testing::TempDir() + "/worker-refused";
  options.reconnect_timeout = reconnect_timeout;
  return options;
}

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A wrong secret on the first registration is the operator's mistake: kPermissionDenied at
// once, not a minute of retries (the reconnect timeout is a minute here: a retrying worker
// would end with kTimeout instead).
TEST(WorkerReconnectTest, AWrongSecretEndsTheFirstRegistration) {
  auto dir = fresh_dir("worker-wrong-secret");
  auto coordinator = start_coordinator("127.0.0.1:0", "right", dir);
  Worker worker(worker_options(coordinator->address(), "wrong", std::chrono::minutes(1)));
  try {
    worker.run();
    ADD_FAILURE() << "a worker with the wrong secret registered";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kPermissionDenied) << e.what();
  }
}

// Registered with the coordinator, the worker sees it go away; what comes back at the same
// address refuses its secret. The refusals are retried until the reconnect timeout, which
// then ends the worker with kTimeout naming the address and the last refusal.
TEST(WorkerReconnectTest, ARefusedHandshakeOnAReconnectIsRetriedUntilTheDeadline) {
  auto dir = fresh_dir("worker-refused-reconnect");
  auto first = start_coordinator("127.0.0.1:0", "right", dir);
  const std::string address = first->address();
  Worker worker(worker_options(address, "right", std::chrono::milliseconds(1500)));
  std::exception_ptr failure;
  std::thread running([&] {
    try {
      worker.run();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  // Registered: the coordinator lists the node.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (PoolClient({address, "right"}).nodes().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(PoolClient({address, "right"}).nodes().empty()) << "the worker never registered";
  first.reset();  // the coordinator goes away...
  auto second = start_coordinator(address, "other", fresh_dir("worker-refused-second"));  // ...and one with another secret answers
  running.join();
  ASSERT_NE(failure, nullptr) << "run() returned without an error";
  try {
    std::rethrow_exception(failure);
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout) << message;
    EXPECT_NE(message.find(address), std::string::npos) << message;
    EXPECT_NE(message.find("stayed unreachable for 1500 ms"), std::string::npos) << message;
    // The last attempt reached the new coordinator and was refused, and still retried.
    EXPECT_NE(message.find("refused this connection"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace petaring::cluster
