// A worker facing a coordinator that accepts connections and drops them at once (what a
// coordinator being killed and restarted looks like from outside): the worker keeps
// trying until its reconnect timeout, then fails with a kTimeout that names the address.
// It must not give up on the first reset.
#include <gtest/gtest.h>

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>

#include <atomic>
#include <string>
#include <thread>

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

}  // namespace
}  // namespace petaring::cluster
