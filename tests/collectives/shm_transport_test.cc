// Shared-memory transport: ranks are threads of this process (and, for the dead-peer
// case, a forked child), each with its own shm transport over real POSIX shared memory.
// The collectives over shm run in the conformance suite (conformance_test.cc); these are
// the transport's own guarantees: ordering, large messages both ways, timeouts, size
// mismatches, dead peers, and no names left in /dev/shm.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/store/file_store.h"
#include "collectives/transport/shm/shm_transport.h"
#include "runtime/error.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using std::chrono::milliseconds;
using testing_ranks::error_of;
using testing_ranks::expect_no_errors;

std::set<std::string> shm_names() {
  std::set<std::string> names;
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* entry = readdir(dir)) {
      if (std::strncmp(entry->d_name, "petaring-", 9) == 0) names.insert(entry->d_name);
    }
    closedir(dir);
  }
  return names;
}

// Whether the segment /dev/shm/<name> was created by this process: its header holds the
// creator's pid after the 8-byte magic (shm_segment.cc). Test programs run side by side
// (ctest -j), so names of other processes may come and go during a test.
bool created_here(const std::string& name) {
  std::FILE* file = std::fopen(("/dev/shm/" + name).c_str(), "rb");
  if (file == nullptr) return false;  // gone again
  int64_t header[2] = {0, 0};
  size_t got = std::fread(header, sizeof(header), 1, file);
  std::fclose(file);
  return got == 1 && header[1] == static_cast<int64_t>(getpid());
}

// Every test checks that it leaves no name in /dev/shm. folder_: a fresh folder for the
// file store of a group the test builds by hand, removed at the end of the test.
class ShmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/petaring-shm-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    folder_ = pattern;
    names_before_ = shm_names();
  }
  void TearDown() override {
    std::filesystem::remove_all(folder_);
    for (const std::string& name : shm_names()) {
      if (!created_here(name)) continue;  // another test program's group, starting up
      EXPECT_TRUE(names_before_.count(name)) << "/dev/shm/" << name << " left behind";
    }
  }

  // Runs fn(transport) on one thread per rank of a fresh shm group of `size` (rings of
  // 64 KiB, so that large messages wrap many times); every transport lives until every
  // rank has finished.
  std::vector<std::exception_ptr> run_ranks(
      int size, const std::function<void(Transport&)>& fn,
      std::optional<ShmTransportOptions> waits = std::nullopt) {
    testing_ranks::TransportGroupOptions options;
    options.shm_ring_bytes = 64 << 10;
    options.shm_waits = waits;
    return testing_ranks::run_group(
        testing_ranks::make_transport_group(testing_ranks::TransportKind::kShm, size, options),
        [&](std::unique_ptr<Communicator>& comm) { fn(comm->transport()); });
  }

  std::string folder_;
  std::set<std::string> names_before_;
};

// Messages of one tag arrive in send order, whether their receives were posted before or
// after they arrived, and receives of another tag can overtake them.
TEST_F(ShmTest, KeepsSendOrderPerTag) {
  constexpr int kMessages = 50;
  auto errors = run_ranks(2, [&](Transport& transport) {
    std::vector<std::unique_ptr<Request>> requests;
    if (transport.rank() == 0) {
      std::vector<int> values(2 * kMessages);
      for (int i = 0; i < kMessages; ++i) {
        for (int tag = 0; tag < 2; ++tag) {
          values[2 * i + tag] = 1000 * tag + i;
          requests.push_back(transport.isend(1, &values[2 * i + tag], sizeof(int), 7 + tag));
        }
      }
      for (auto& request : requests) request->wait(milliseconds(10000));
      return;
    }
    std::vector<int> got(2 * kMessages, -1);
    for (int i = 0; i < kMessages; ++i) {  // all of tag 8 first, then tag 7
      requests.push_back(transport.irecv(0, &got[kMessages + i], sizeof(int), 8));
    }
    for (auto& request : requests) request->wait(milliseconds(10000));
    std::this_thread::sleep_for(milliseconds(20));  // let tag 7 arrive unreceived
    for (int i = 0; i < kMessages; ++i) {
      transport.irecv(0, &got[i], sizeof(int), 7)->wait(milliseconds(10000));
    }
    for (int i = 0; i < kMessages; ++i) {
      EXPECT_EQ(got[i], i);
      EXPECT_EQ(got[kMessages + i], 1000 + i);
    }
  });
  expect_no_errors(errors);
}

TEST_F(ShmTest, LargeMessagesBothWaysAtOnce) {
  constexpr size_t kBytes = size_t{32} << 20;
  auto errors = run_ranks(2, [&](Transport& transport) {
    int rank = transport.rank(), peer = 1 - rank;
    std::vector<uint32_t> out(kBytes / 4), in(kBytes / 4, 0);
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint32_t>(i * 2654435761u + rank);
    auto send = transport.isend(peer, out.data(), kBytes, 3);
    auto receive = transport.irecv(peer, in.data(), kBytes, 3);
    receive->wait(milliseconds(20000));
    send->wait(milliseconds(20000));
    size_t wrong = 0;
    for (size_t i = 0; i < in.size(); ++i) wrong += in[i] != static_cast<uint32_t>(i * 2654435761u + peer);
    EXPECT_EQ(wrong, 0u) << "rank " << rank;
  });
  expect_no_errors(errors);
}

// irecv_reduce combines straight from the ring: a 3-value bf16 message first leaves every
// later frame 2 bytes off 4-byte alignment, and the f32 and i64 messages (larger than the
// 64 KiB ring, so they wrap many times) then meet unaligned elements and elements cut by
// the ring's end. The results are exact (integer values), and a receive posted after its
// message arrived combines from the buffered copy.
TEST_F(ShmTest, ReceivesThatReduceCombineStraightFromTheRing) {
  constexpr size_t kFloats = 100003, kInts = 20011;
  auto errors = run_ranks(2, [&](Transport& transport) {
    ASSERT_TRUE(transport.reduces_on_receive());
    const int rank = transport.rank(), peer = 1 - rank;
    std::vector<BF16> odd = {bf16_from_f32(1.0f), bf16_from_f32(2.0f), bf16_from_f32(3.0f)};
    std::vector<float> floats(kFloats), sums(kFloats);
    std::vector<int64_t> ints(kInts), maxima(kInts);
    for (size_t i = 0; i < kFloats; ++i) {
      floats[i] = static_cast<float>((i % 1000) + rank);
      sums[i] = static_cast<float>(i % 7);
    }
    for (size_t i = 0; i < kInts; ++i) {
      ints[i] = static_cast<int64_t>(i) * (rank + 1);
      maxima[i] = static_cast<int64_t>(i) + 5;
    }
    std::vector<BF16> odd_in(3, bf16_from_f32(10.0f));
    auto r1 = transport.irecv_reduce(peer, odd_in.data(), 6, 1, DType::kBF16, ReduceOp::kSum);
    auto r2 = transport.irecv_reduce(peer, sums.data(), kFloats * 4, 2, DType::kF32, ReduceOp::kSum);
    auto s1 = transport.isend(peer, odd.data(), 6, 1);
    auto s2 = transport.isend(peer, floats.data(), kFloats * 4, 2);
    auto s3 = transport.isend(peer, ints.data(), kInts * 8, 3);
    r1->wait(milliseconds(20000));
    r2->wait(milliseconds(20000));
    // Posted late: the i64 message may already be buffered whole.
    auto r3 = transport.irecv_reduce(peer, maxima.data(), kInts * 8, 3, DType::kI64, ReduceOp::kMax);
    r3->wait(milliseconds(20000));
    for (auto* send : {&s1, &s2, &s3}) (*send)->wait(milliseconds(20000));
    EXPECT_EQ(bf16_to_f32(odd_in[0]), 11.0f);
    EXPECT_EQ(bf16_to_f32(odd_in[2]), 13.0f);
    size_t wrong = 0;
    for (size_t i = 0; i < kFloats; ++i) {
      wrong += sums[i] != static_cast<float>(i % 7) + static_cast<float>((i % 1000) + peer);
    }
    for (size_t i = 0; i < kInts; ++i) {
      wrong += maxima[i] != std::max<int64_t>(static_cast<int64_t>(i) + 5, static_cast<int64_t>(i) * (peer + 1));
    }
    EXPECT_EQ(wrong, 0u) << "rank " << rank;
  });
  expect_no_errors(errors);
}

// Waits that go straight to sleep on the doorbell, with a sleep far longer than the
// waits' timeout: only the peer's wake-up can complete them (a missed wake-up turns into
// kTimeout). A ping-pong of small messages, then large ones through a ring they wrap
// (the sender then sleeps until the receiver frees room), and three ranks at once.
TEST_F(ShmTest, SleepingWaitsAreWokenByThePeer) {
  ShmTransportOptions waits;
  waits.spin_polls = 0;
  waits.yield_window = milliseconds(0);
  waits.max_sleep = std::chrono::seconds(120);
  constexpr milliseconds kTimeout{30000};
  auto errors = run_ranks(2, [&](Transport& transport) {
    int rank = transport.rank(), peer = 1 - rank;
    for (int round = 0; round < 200; ++round) {
      int value = round;
      if (rank == 0) {
        transport.isend(peer, &value, sizeof(value), 1)->wait(kTimeout);
        transport.irecv(peer, &value, sizeof(value), 2)->wait(kTimeout);
        EXPECT_EQ(value, round + 1000);
      } else {
        transport.irecv(peer, &value, sizeof(value), 1)->wait(kTimeout);
        value += 1000;
        transport.isend(peer, &value, sizeof(value), 2)->wait(kTimeout);
      }
    }
    std::vector<uint32_t> big(size_t{1} << 20, static_cast<uint32_t>(rank + 7));
    if (rank == 0) {
      transport.isend(peer, big.data(), big.size() * 4, 3)->wait(kTimeout);
    } else {
      transport.irecv(peer, big.data(), big.size() * 4, 3)->wait(kTimeout);
      EXPECT_EQ(big.front(), 7u);
      EXPECT_EQ(big.back(), 7u);
    }
  }, waits);
  expect_no_errors(errors);
  // Three ranks passing a token around: each sleeps until its left neighbour wakes it.
  expect_no_errors(run_ranks(3, [&](Transport& transport) {
    int rank = transport.rank(), right = (rank + 1) % 3, left = (rank + 2) % 3;
    int token = 0;
    for (int round = 0; round < 100; ++round) {
      if (rank == 0) {
        token = round;
        transport.isend(right, &token, sizeof(token), 4)->wait(kTimeout);
        transport.irecv(left, &token, sizeof(token), 4)->wait(kTimeout);
        EXPECT_EQ(token, round + 2);
      } else {
        transport.irecv(left, &token, sizeof(token), 4)->wait(kTimeout);
        ++token;
        transport.isend(right, &token, sizeof(token), 4)->wait(kTimeout);
      }
    }
  }, waits));
}

TEST_F(ShmTest, ReceiveWithoutSenderTimesOutNamingThePeer) {
  auto errors = run_ranks(2, [&](Transport& transport) {
    if (transport.rank() != 1) return;
    int value = 0;
    transport.irecv(0, &value, sizeof(value), 5)->wait(milliseconds(200));
  });
  EXPECT_FALSE(errors[0]);
  Error error = error_of(errors[1]);
  EXPECT_EQ(error.kind(), ErrorKind::kTimeout) << error.what();
  EXPECT_NE(std::string(error.what()).find("receiving from rank 0"), std::string::npos)
      << error.what();
}

TEST_F(ShmTest, SizeMismatchIsReported) {
  auto errors = run_ranks(2, [&](Transport& transport) {
    char buffer[16] = {};
    if (transport.rank() == 0) {
      transport.isend(1, buffer, 8, 9)->wait(milliseconds(5000));
    } else {
      transport.irecv(0, buffer, 16, 9)->wait(milliseconds(5000));
    }
  });
  EXPECT_FALSE(errors[0]);
  Error error = error_of(errors[1]);
  EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition) << error.what();
  EXPECT_NE(std::string(error.what()).find("expected 16 bytes from rank 0"), std::string::npos)
      << error.what();
}

// Rank 1 is a child process that joins and exits without sending: rank 0's receive must
// end with kDisconnected naming rank 1 long before its timeout.
// Forks a process that joins the group in `folder` as rank 1 of 2 and exits at once; the
// caller joins as rank 0 (make_shm_transport) and reaps the child when it chooses.
pid_t fork_peer_that_exits(const std::string& folder) {
  pid_t child = fork();
  if (child == 0) {
    try {
      FileStore store(folder);
      auto transport = make_shm_transport(store, 1, 2);
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  return child;
}

// A receive from rank 1, whose process has exited, fails naming it well within 5 s.
void expect_receive_from_exited_rank_1_fails(Transport& transport) {
  int value = 0;
  auto start = std::chrono::steady_clock::now();
  try {
    transport.irecv(1, &value, sizeof(value), 1)->wait(milliseconds(20000));
    ADD_FAILURE() << "receive from an exited peer completed";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::kDisconnected) << error.what();
    EXPECT_NE(std::string(error.what()).find("rank 1"), std::string::npos) << error.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
}

TEST_F(ShmTest, DeadPeerProcessIsDisconnected) {
  pid_t child = fork_peer_that_exits(folder_);
  ASSERT_GE(child, 0);
  FileStore store(folder_);
  auto transport = make_shm_transport(store, 0, 2);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  expect_receive_from_exited_rank_1_fails(*transport);
}

// A peer that exited but is not reaped yet (a zombie: kill(pid, 0) still succeeds) is
// gone too.
TEST_F(ShmTest, ExitedButUnreapedPeerIsDisconnected) {
  pid_t child = fork_peer_that_exits(folder_);
  ASSERT_GE(child, 0);
  FileStore store(folder_);
  auto transport = make_shm_transport(store, 0, 2);
  expect_receive_from_exited_rank_1_fails(*transport);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);  // reaped only now
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace petaring
