// Authentication and hostile peers against a real Server on loopback: every bad peer is
// rejected (its connection closed), and the server keeps serving good ones.
#include <gtest/gtest.h>

#include <utility>

#include <boost/asio.hpp>

#include "cluster/auth.h"
#include "cluster/connection.h"
#include "cluster/server.h"
#include "runtime/error.h"

namespace petaring::cluster {
namespace {

namespace asio = boost::asio;
const std::string kSecret = "correct horse battery staple";

// Clients may list jobs; ranks may join their own job.
class TestHandler : public Handler {
 public:
  bool allowed(const Peer& peer, wire::Envelope::Which which) const override {
    if (peer.role == wire::Role::CLIENT) return which == wire::Envelope::LIST_JOBS;
    if (peer.role == wire::Role::RANK) return which == wire::Envelope::JOIN_JOB;
    return false;
  }
  void handle(const Peer& peer, wire::Envelope::Reader request, wire::Envelope::Builder reply) override {
    if (request.isJoinJob()) {
      auto join = request.getJoinJob();
      if (join.getJobId() != peer.job_id || join.getAttempt() != peer.attempt) {
        PR_FAIL(kPermissionDenied, "rank of job ", peer.job_id, " may not join job ", join.getJobId());
      }
      reply.initJoined().setStoreAddress("store-of-" + peer.name);
      return;
    }
    reply.initJobs(0);
  }
};

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() {
    ServerOptions options;
    options.secret = kSecret;
    options.handshake_timeout = std::chrono::milliseconds(300);
    options.max_payload = 1 << 16;
    server_ = std::make_unique<Server>(options, &handler_);
  }

  ConnectOptions client(const std::string& key) {
    ConnectOptions options;
    options.address = server_->address();
    options.name = "test";
    options.key = key;
    options.connect_timeout = std::chrono::milliseconds(2000);
    return options;
  }

  // A good client still gets answers.
  void expect_serving() {
    Connection connection(client(kSecret));
    capnp::MallocMessageBuilder message;
    message.initRoot<wire::Envelope>().setListJobs();
    EXPECT_TRUE(connection.call(message)->envelope().isJobs());
  }

  // Connects a raw socket, reads the challenge, sends `bytes`, and returns true when the
  // server then closes the connection.
  bool raw_peer_is_closed(const std::string& bytes, bool half_close = false) {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(server_->port())});
    uint8_t header[kFrameHeaderBytes];
    asio::read(socket, asio::buffer(header));
    std::vector<uint8_t> payload(decode_frame_header(header));
    asio::read(socket, asio::buffer(payload));
    boost::system::error_code ec;
    asio::write(socket, asio::buffer(bytes), ec);  // the server may close before the end
    if (ec) return ec == asio::error::broken_pipe || ec == asio::error::connection_reset;
    if (half_close) socket.shutdown(asio::ip::tcp::socket::shutdown_send);
    char byte;
    asio::read(socket, asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  TestHandler handler_;
  std::unique_ptr<Server> server_;
};

TEST_F(AuthTest, RightSecretIsServed) { expect_serving(); }

TEST_F(AuthTest, WrongSecretIsRejected) {
  try {
    Connection connection(client("not the secret at all"));
    FAIL() << "a wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kPermissionDenied);
    EXPECT_NE(std::string(e.what()).find("--secret-file"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, NoSecretIsRejected) {
  EXPECT_THROW(Connection connection(client("")), Error);
  expect_serving();
}

TEST_F(AuthTest, SilentPeerIsClosedAtTheDeadline) {
  EXPECT_TRUE(raw_peer_is_closed(""));
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, RandomBytesAreRejected) {
  std::string junk = random_bytes(200);
  EXPECT_TRUE(raw_peer_is_closed(junk));
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, TruncatedFrameIsDropped) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setListJobs();
  std::string frame = encode_frame(message);
  EXPECT_TRUE(raw_peer_is_closed(frame.substr(0, frame.size() - 3), /*half_close=*/true));
  expect_serving();
}

TEST_F(AuthTest, OversizedFrameIsRejected) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initSubmit().setRecipeYaml(std::string(100000, 'x'));
  EXPECT_TRUE(raw_peer_is_closed(encode_frame(message)));
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, WrongTypeBeforeHelloIsRejected) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().setListJobs();
  EXPECT_TRUE(raw_peer_is_closed(encode_frame(message)));
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, WrongTypeAfterHelloClosesTheConnection) {
  Connection connection(client(kSecret));
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Envelope>().initHeartbeat().setNodeId(1);  // clients may not
  try {
    connection.call(message);
    FAIL() << "a client's heartbeat was answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kDisconnected);
  }
  EXPECT_EQ(server_->rejected_connections(), 1);
  expect_serving();
}

TEST_F(AuthTest, RankJoinsOnlyItsOwnJob) {
  ConnectOptions rank = client(job_token(kSecret, 7, 2));
  rank.role = wire::Role::RANK;
  rank.name = rank_name(7, 2);
  Connection connection(rank);
  capnp::MallocMessageBuilder own;
  auto join = own.initRoot<wire::Envelope>().initJoinJob();
  join.setJobId(7);
  join.setAttempt(2);
  EXPECT_EQ(std::string(connection.call(own)->envelope().getJoined().getStoreAddress()), "store-of-7.2");
  capnp::MallocMessageBuilder other;
  other.initRoot<wire::Envelope>().initJoinJob().setJobId(8);
  EXPECT_THROW(connection.call(other), Error);

  // Job 7's token does not open job 8, and it is not the pool secret either.
  ConnectOptions impostor = rank;
  impostor.name = rank_name(8, 2);
  EXPECT_THROW(Connection c(impostor), Error);
  ConnectOptions as_client = client(job_token(kSecret, 7, 2));
  EXPECT_THROW(Connection c(as_client), Error);
  expect_serving();
}

TEST(Auth, SecretFile) {
  std::string dir = ::testing::TempDir();
  EXPECT_THROW(read_secret_file(dir + "/no-such-secret"), Error);
  std::string path = dir + "/short-secret";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("short\n", f);
  std::fclose(f);
  try {
    read_secret_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  }
  f = std::fopen(path.c_str(), "w");
  std::fputs("  0123456789abcdefXYZ\n", f);
  std::fclose(f);
  EXPECT_EQ(read_secret_file(path), "0123456789abcdefXYZ");
}

}  // namespace
}  // namespace petaring::cluster
