// The calling side against a hung coordinator: a listener that accepts connections (the
// kernel's backlog does it) and never answers. A call must end with a clear kTimeout,
// not block forever.
#include <gtest/gtest.h>

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>

#include <string>

#include "cluster/client.h"
#include "cluster/connection.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

class SilentListener {
 public:
  SilentListener() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
  std::string address() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

TEST(ConnectionTest, HungCoordinatorTimesOutNamingIt) {
  SilentListener listener;
  ConnectOptions options;
  options.address = listener.address();
  options.key = "secret";
  options.read_timeout = std::chrono::milliseconds(200);
  try {
    Connection connection(options);
    ADD_FAILURE() << "connected to a server that never answers";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
    std::string message = e.what();
    EXPECT_NE(message.find(listener.address()), std::string::npos) << message;
    EXPECT_NE(message.find("did not answer within 200 ms"), std::string::npos) << message;
  }
}

TEST(ConnectionTest, PoolClientPassesItsTimeoutOn) {
  SilentListener listener;
  PoolAddress address{listener.address(), "secret", std::chrono::milliseconds(100)};
  try {
    PoolClient client(address);
    ADD_FAILURE() << "connected to a server that never answers";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
    EXPECT_NE(std::string(e.what()).find("--timeout-ms"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace petaring::cluster
