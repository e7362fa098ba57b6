// Hierarchical allreduce (hierarchical.h) with faked hosts (Communicator::init_hosts) over
// every transport that runs ranks as threads (local, tcp, shm): the automatic choice, exact
// integer sums and float averages against a double reference, bit-identical results on
// every rank, hosts holding non-contiguous ranks, and the errors when it is forced on
// hosts of different sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/direct.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "tests/collectives/transport_group.h"

namespace petaring {
namespace {

using testing_ranks::error_of;
using testing_ranks::expect_no_errors;
using testing_ranks::run_ranks;
using testing_ranks::TransportKind;
using testing_ranks::transport_kind_name;

struct Layout {
  TransportKind kind;
  int world;
  int hosts;
  bool interleaved;  // host of rank r: r % hosts (else r / (world / hosts))
};

std::string host_of(const Layout& layout, int rank) {
  int host = layout.interleaved ? rank % layout.hosts : rank / (layout.world / layout.hosts);
  return "fake-host-" + std::to_string(host);
}

int32_t int_input(int rank, size_t i) {
  return static_cast<int32_t>((i * 2654435761u + static_cast<size_t>(rank) * 40503u) % 100003) - 50000;
}

float float_input(int rank, size_t i) { return static_cast<float>(int_input(rank, i)) / 337.0f; }

// The large-message algorithm without the hierarchy: direct where the transport reaches
// every peer's memory (local; shm where cross-memory attach is allowed), else the ring.
std::string flat_algorithm(Communicator& comm) {
  return peer_memory_of_all(comm.transport()) != nullptr ? "direct" : "ring";
}

class HierarchicalTest : public ::testing::TestWithParam<Layout> {};

TEST_P(HierarchicalTest, MatchesTheReferenceOnEveryRankAtEverySize) {
  const Layout layout = GetParam();
  const int n = layout.world;
  expect_no_errors(run_ranks(layout.kind, n, [&](Communicator& comm) {
    const int r = comm.rank();
    comm.init_hosts(host_of(layout, r));
    ASSERT_EQ(comm.num_hosts(), layout.hosts);
    ASSERT_EQ(comm.local_size(), n / layout.hosts);
    const bool automatic = layout.hosts > 1 && n / layout.hosts > 1;
    EXPECT_EQ(std::string(comm.allreduce_algorithm(1 << 20)),
              automatic ? "hierarchical" : flat_algorithm(comm));
    comm.set_hierarchical(Communicator::Hierarchical::kOn);
    comm.set_small_message_threshold(0);  // every size through the hierarchy
    ASSERT_EQ(std::string(comm.allreduce_algorithm(4)), "hierarchical");
    std::vector<size_t> counts = {0, 1, 7, static_cast<size_t>(n - 1), 10007};
    if (n == 4) counts.push_back((size_t{1} << 20) + 3);
    for (size_t count : counts) {
      std::vector<int32_t> ints(count);
      for (size_t i = 0; i < count; ++i) ints[i] = int_input(r, i);
      comm.allreduce(ints.data(), count, DType::kI32, ReduceOp::kSum);
      for (size_t i = 0; i < count; ++i) {
        int32_t expected = 0;
        for (int q = 0; q < n; ++q) expected += int_input(q, i);
        ASSERT_EQ(ints[i], expected) << "count " << count << " element " << i;
      }
      std::vector<float> in(count), out(count);
      for (size_t i = 0; i < count; ++i) in[i] = float_input(r, i);
      comm.allreduce(in.data(), out.data(), count, DType::kF32, ReduceOp::kAverage);  // out of place
      for (size_t i = 0; i < count; ++i) {
        double sum = 0, magnitude = 0;
        for (int q = 0; q < n; ++q) sum += float_input(q, i), magnitude += std::fabs(float_input(q, i));
        ASSERT_NEAR(out[i], sum / n, 1e-6 * magnitude + 1e-30) << "count " << count;
      }
      // The ring's host-local steps give the bytes of the single-copy ones (where the
      // transport has peer memory; elsewhere both runs take the ring).
      std::vector<float> ring_out(count);
      comm.set_single_copy(false);
      comm.allreduce(in.data(), ring_out.data(), count, DType::kF32, ReduceOp::kAverage);
      comm.set_single_copy(true);
      ASSERT_EQ(std::memcmp(ring_out.data(), out.data(), count * sizeof(float)), 0)
          << "count " << count << ": the ring's local steps differ from the direct ones";
      // Bit-identical on every rank: rank 0's bytes, broadcast, against ours.
      std::vector<float> root = out;
      comm.set_hierarchical(Communicator::Hierarchical::kAuto);
      comm.broadcast(root.data(), count * sizeof(float), 0);
      comm.set_hierarchical(Communicator::Hierarchical::kOn);
      ASSERT_EQ(std::memcmp(root.data(), out.data(), count * sizeof(float)), 0) << "count " << count;
    }
    float peak = static_cast<float>(r);
    comm.allreduce(&peak, 1, DType::kF32, ReduceOp::kMax);
    EXPECT_EQ(peak, static_cast<float>(n - 1));
  }));
}

std::vector<Layout> layouts() {
  std::vector<Layout> all;
  for (TransportKind kind : {TransportKind::kLocal, TransportKind::kTcp, TransportKind::kShm}) {
    all.push_back({kind, 4, 2, false});
    all.push_back({kind, 6, 3, true});
  }
  all.push_back({TransportKind::kLocal, 6, 2, false});
  all.push_back({TransportKind::kLocal, 8, 4, true});
  all.push_back({TransportKind::kShm, 8, 2, true});
  all.push_back({TransportKind::kLocal, 3, 1, false});  // one host: the intra ring only
  all.push_back({TransportKind::kLocal, 3, 3, false});  // one rank per host: the inter ring only
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layouts, HierarchicalTest, ::testing::ValuesIn(layouts()),
                         [](const auto& info) {
                           const Layout& l = info.param;
                           return std::string(transport_kind_name(l.kind)) + "_" +
                                  std::to_string(l.world) + "ranks_" + std::to_string(l.hosts) +
                                  "hosts" + (l.interleaved ? "_interleaved" : "");
                         });

// Hosts of 2 and 1 ranks: automatic falls back to the ring; forced on is an error naming
// the cause, before any data moves.
TEST(HierarchicalUnevenTest, FallsBackAutomaticallyAndRefusesWhenForced) {
  expect_no_errors(run_ranks(TransportKind::kLocal, 3, [&](Communicator& comm) {
    comm.init_hosts(comm.rank() < 2 ? "a" : "b");
    EXPECT_EQ(comm.num_hosts(), 2);
    EXPECT_EQ(comm.local_size(), 0);
    EXPECT_EQ(std::string(comm.allreduce_algorithm(1 << 20)), flat_algorithm(comm));
    std::vector<int32_t> data(100000, 1);
    comm.allreduce(data.data(), data.size(), DType::kI32, ReduceOp::kSum);
    EXPECT_EQ(data.back(), 3);
    comm.set_hierarchical(Communicator::Hierarchical::kOn);
    try {
      comm.allreduce(data.data(), data.size(), DType::kI32, ReduceOp::kSum);
      ADD_FAILURE() << "forced hierarchical allreduce on uneven hosts did not fail";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kFailedPrecondition);
      EXPECT_NE(std::string(error.what()).find("different numbers of ranks"), std::string::npos)
          << error.what();
    }
  }));
}

}  // namespace
}  // namespace petaring
