// Stores: the TCP store (server and clients in this process) and the file store, through
// the Store interface.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "collectives/store/file_store.h"
#include "collectives/store/tcp_store.h"
#include "runtime/error.h"

namespace petaring {
namespace {

using std::chrono::milliseconds;

// Makes clients of one store of the kind under test; the fixture owns the server/folder.
class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      server_ = std::make_unique<TcpStoreServer>(0);
    } else {
      folder_ = (std::filesystem::temp_directory_path() /
                 ("petaring_store_test_" + std::to_string(::getpid()) + "_" +
                  std::to_string(counter_++)))
                    .string();
    }
  }
  void TearDown() override {
    if (!folder_.empty()) std::filesystem::remove_all(folder_);
  }
  std::unique_ptr<Store> client() {
    if (server_) return std::make_unique<TcpStore>("127.0.0.1:" + std::to_string(server_->port()));
    return std::make_unique<FileStore>(folder_);
  }

  std::unique_ptr<TcpStoreServer> server_;
  std::string folder_;
  static inline int counter_ = 0;
};

TEST_P(StoreTest, SetThenGetFromAnotherClientKeepsBytes) {
  auto a = client();
  auto b = client();
  std::string value("bin\0ary/\xff", 9);
  a->set("some/key with spaces", value);
  EXPECT_EQ(b->get("some/key with spaces", milliseconds(1000)), value);
  a->set("some/key with spaces", "replaced");
  EXPECT_EQ(b->get("some/key with spaces", milliseconds(1000)), "replaced");
  a->set("empty", "");
  EXPECT_EQ(b->get("empty", milliseconds(1000)), "");
}

TEST_P(StoreTest, GetBlocksUntilAnotherClientSets) {
  auto waiter = client();
  auto setter = client();
  auto start = std::chrono::steady_clock::now();
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(150));
    setter->set("late", "here");
  });
  EXPECT_EQ(waiter->get("late", milliseconds(5000)), "here");
  later.join();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(140));
}

TEST_P(StoreTest, GetTimesOutNamingTheKey) {
  auto store = client();
  auto start = std::chrono::steady_clock::now();
  try {
    store->get("never/set", milliseconds(200));
    FAIL() << "get of a missing key returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kTimeout);
    EXPECT_NE(std::string(error.what()).find("never/set"), std::string::npos) << error.what();
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(190));
  EXPECT_LT(elapsed, milliseconds(3000));
}

TEST_P(StoreTest, AddIsAtomicAcrossClients) {
  constexpr int kThreads = 4, kAdds = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto store = client();
      for (int i = 0; i < kAdds; ++i) store->add("counter", 1);
    });
  }
  for (auto& thread : threads) thread.join();
  auto store = client();
  EXPECT_EQ(store->add("counter", 0), kThreads * kAdds);
  EXPECT_EQ(store->add("counter", -5), kThreads * kAdds - 5);
  EXPECT_EQ(store->get("counter", milliseconds(100)), std::to_string(kThreads * kAdds - 5));
  EXPECT_EQ(store->add("fresh", 7), 7);
  store->set("text", "abc");
  EXPECT_THROW(store->add("text", 1), Error);
}

INSTANTIATE_TEST_SUITE_P(Kinds, StoreTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Tcp" : "File"; });

TEST(TcpStore, ConnectFailureNamesTheAddress) {
  int port = 0;
  { port = TcpStoreServer(0).port(); }  // a port with nothing listening any more
  std::string address = "127.0.0.1:" + std::to_string(port);
  try {
    TcpStore store(address, milliseconds(200));
    FAIL() << "connected to a closed port";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kTimeout);
    EXPECT_NE(std::string(error.what()).find(address), std::string::npos) << error.what();
  }
  EXPECT_THROW(TcpStore("no-port-here"), Error);
}

TEST(TcpStore, ClientRetriesUntilTheServerStarts) {
  int port = 0;
  { port = TcpStoreServer(0).port(); }
  std::unique_ptr<TcpStoreServer> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(milliseconds(200));
    server = std::make_unique<TcpStoreServer>(port);
  });
  TcpStore store("127.0.0.1:" + std::to_string(port), milliseconds(5000));
  starter.join();
  store.set("k", "v");
  EXPECT_EQ(store.get("k", milliseconds(100)), "v");
}

TEST(TcpStore, ClientSeesServerGoAway) {
  auto server = std::make_unique<TcpStoreServer>(0);
  TcpStore store("127.0.0.1:" + std::to_string(server->port()));
  store.set("k", "v");
  server.reset();
  try {
    store.set("k", "w");
    store.get("k", milliseconds(100));
    FAIL() << "store calls went on after the server stopped";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kDisconnected);
    EXPECT_NE(std::string(error.what()).find("127.0.0.1:"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace petaring
