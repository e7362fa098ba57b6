// Communicator::split over every transport that runs ranks as threads (local, tcp, shm:
// transport_group.h): sub-group membership and order, the collectives on sub-groups
// (checked exactly against a serial reference) at world sizes 1-8 (1-4 over tcp) and the
// awkward sizes 0, 1, 7, size - 1, a prime and 1M + 3, nested splits, ranks left out, and
// two (three) communicators sharing one transport with operations in flight at once.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using testing_ranks::expect_no_errors;
using testing_ranks::run_ranks;
using testing_ranks::TransportKind;
using testing_ranks::transport_kind_name;

int32_t value_of(int world_rank, size_t i) {
  return static_cast<int32_t>((i * 7919 + static_cast<size_t>(world_rank) * 104729) % 20011) - 10000;
}

// Allreduce (i32 sum and f32 max), reduce_scatter, allgather and broadcast on `sub`, whose
// members are the world ranks `members` (in sub rank order), checked exactly.
void check_sub_collectives(Communicator& sub, const std::vector<int>& members, size_t count) {
  const int n = sub.size(), r = sub.rank();
  const int me = members[static_cast<size_t>(r)];
  std::vector<int32_t> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = value_of(me, i);
  sub.allreduce(data.data(), count, DType::kI32, ReduceOp::kSum);
  for (size_t i = 0; i < count; ++i) {
    int32_t expected = 0;
    for (int member : members) expected += value_of(member, i);
    ASSERT_EQ(data[i], expected) << "sub rank " << r << " element " << i << " of " << count;
  }
  std::vector<float> floats(count);
  for (size_t i = 0; i < count; ++i) floats[i] = static_cast<float>(value_of(me, i));
  sub.allreduce(floats.data(), count, DType::kF32, ReduceOp::kMax);
  for (size_t i = 0; i < count; ++i) {
    int32_t expected = value_of(members[0], i);
    for (int member : members) expected = std::max(expected, value_of(member, i));
    ASSERT_EQ(floats[i], static_cast<float>(expected)) << "element " << i;
  }
  const size_t block = std::min<size_t>(count, 257);
  std::vector<int32_t> send(block * static_cast<size_t>(n)), mine(block);
  for (size_t i = 0; i < send.size(); ++i) send[i] = value_of(me, i);
  sub.reduce_scatter(send.data(), mine.data(), block, DType::kI32, ReduceOp::kSum);
  for (size_t i = 0; i < block; ++i) {
    int32_t expected = 0;
    for (int member : members) expected += value_of(member, static_cast<size_t>(r) * block + i);
    ASSERT_EQ(mine[i], expected);
  }
  std::vector<int32_t> gathered(block * static_cast<size_t>(n));
  sub.allgather(mine.data(), gathered.data(), block, DType::kI32);
  for (size_t i = 0; i < gathered.size(); ++i) {
    int32_t expected = 0;
    for (int member : members) expected += value_of(member, i);
    ASSERT_EQ(gathered[i], expected);
  }
  std::vector<int32_t> broadcast(block, me);
  sub.broadcast(broadcast.data(), block * sizeof(int32_t), n - 1);
  for (int32_t v : broadcast) ASSERT_EQ(v, members.back());
}

struct SplitCase {
  TransportKind kind;
  int world;
};

class SplitTest : public ::testing::TestWithParam<SplitCase> {};

// Colors rank % 2, keys reversing the order: sub-group c holds the world ranks of parity c,
// highest first. Then every awkward size on each sub-group.
TEST_P(SplitTest, SubGroupsRunEveryCollectiveOnEveryAwkwardSize) {
  const int world = GetParam().world;
  expect_no_errors(run_ranks(GetParam().kind, world, [&](Communicator& comm) {
    const int r = comm.rank();
    std::unique_ptr<Communicator> sub = comm.split(r % 2, -r);
    ASSERT_NE(sub, nullptr);
    std::vector<int> members;
    for (int w = world - 1; w >= 0; --w) {
      if (w % 2 == r % 2) members.push_back(w);
    }
    ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
    ASSERT_EQ(members[static_cast<size_t>(sub->rank())], r);
    std::vector<size_t> counts = {0, 1, 7, static_cast<size_t>(sub->size() - 1), 8191};
    if (world == 4) counts.push_back((size_t{1} << 20) + 3);
    for (size_t count : counts) check_sub_collectives(*sub, members, count);
    // The parent still works, and a nested split of a sub-group (one color: the same group,
    // keys in reverse again) too.
    int32_t one = 1;
    comm.allreduce(&one, 1, DType::kI32, ReduceOp::kSum);
    EXPECT_EQ(one, world);
    std::unique_ptr<Communicator> nested = sub->split(0, -sub->rank());
    ASSERT_NE(nested, nullptr);
    std::vector<int> reversed(members.rbegin(), members.rend());
    EXPECT_EQ(reversed[static_cast<size_t>(nested->rank())], r);
    check_sub_collectives(*nested, reversed, 7);
  }));
}

std::vector<SplitCase> split_cases() {
  std::vector<SplitCase> cases;
  for (int n = 1; n <= 8; ++n) cases.push_back({TransportKind::kLocal, n});
  for (int n = 1; n <= 4; ++n) cases.push_back({TransportKind::kTcp, n});
  for (int n = 1; n <= 8; ++n) cases.push_back({TransportKind::kShm, n});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Worlds, SplitTest, ::testing::ValuesIn(split_cases()),
                         [](const auto& info) {
                           return std::string(transport_kind_name(info.param.kind)) + "_" +
                                  std::to_string(info.param.world);
                         });

class SplitInFlightTest : public ::testing::TestWithParam<TransportKind> {};

// A 2 x 2 grid: "rows" (world ranks {0,1} and {2,3}) and "columns" ({0,2} and {1,3}), as
// tensor- and data-parallel groups. Each runs a stream of allreduces from its own thread
// while the world communicator runs asynchronous ones from the test's thread: three
// communicators on one transport, all in flight at once.
TEST_P(SplitInFlightTest, TwoSubGroupsAndTheParentInFlightAtOnce) {
  constexpr int kRounds = 30;
  expect_no_errors(run_ranks(GetParam(), 4, [&](Communicator& comm) {
    const int r = comm.rank();
    std::unique_ptr<Communicator> row = comm.split(r / 2, r);
    std::unique_ptr<Communicator> column = comm.split(r % 2, r);
    ASSERT_TRUE(row && column);
    std::vector<std::string> failures(2);
    auto stream = [&](Communicator& group, int partner, int which) {
      try {
        for (int round = 0; round < kRounds; ++round) {
          size_t count = round % 3 == 0 ? 50000 : 3;  // both algorithms
          std::vector<int32_t> data(count, r * 100 + round);
          group.allreduce(data.data(), count, DType::kI32, ReduceOp::kSum);
          int32_t expected = r * 100 + partner * 100 + 2 * round;
          if (data.front() != expected || data.back() != expected) {
            failures[which] = "round " + std::to_string(round) + ": got " +
                              std::to_string(data.front()) + ", expected " + std::to_string(expected);
            return;
          }
        }
      } catch (const std::exception& error) {
        failures[which] = error.what();
      }
    };
    std::thread rows([&] { stream(*row, r ^ 1, 0); });
    std::thread columns([&] { stream(*column, r ^ 2, 1); });
    std::vector<std::vector<int64_t>> buffers(kRounds, std::vector<int64_t>(20000, r + 1));
    std::vector<std::shared_ptr<Work>> works;
    for (auto& buffer : buffers) {
      works.push_back(comm.allreduce_async(buffer.data(), buffer.size(), DType::kI64, ReduceOp::kSum));
    }
    for (auto& work : works) work->wait();
    rows.join();
    columns.join();
    EXPECT_EQ(failures[0], "") << "row group";
    EXPECT_EQ(failures[1], "") << "column group";
    for (auto& buffer : buffers) ASSERT_EQ(buffer.back(), 10);
  }));
}

// A negative color leaves the rank out: it gets null, the others their group.
TEST_P(SplitInFlightTest, NegativeColorLeavesTheRankOut) {
  expect_no_errors(run_ranks(GetParam(), 3, [&](Communicator& comm) {
    const int r = comm.rank();
    std::unique_ptr<Communicator> sub = comm.split(r == 1 ? Communicator::kNoColor : 5, 0);
    if (r == 1) {
      EXPECT_EQ(sub, nullptr);
      return;
    }
    ASSERT_NE(sub, nullptr);
    EXPECT_EQ(sub->size(), 2);
    EXPECT_EQ(sub->rank(), r == 0 ? 0 : 1);
    check_sub_collectives(*sub, {0, 2}, 1001);
  }));
}

INSTANTIATE_TEST_SUITE_P(Transports, SplitInFlightTest,
                         ::testing::Values(TransportKind::kLocal, TransportKind::kTcp,
                                           TransportKind::kShm),
                         [](const auto& info) { return transport_kind_name(info.param); });

}  // namespace
}  // namespace petaring
