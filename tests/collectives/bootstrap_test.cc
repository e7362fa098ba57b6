// The world communicator without mpirun: one rank, MPI never touched.
#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

#include "collectives/bootstrap.h"

namespace petaring {
namespace {

TEST(Bootstrap, WithoutMpirunIsOneRankAndLeavesMpiAlone) {
  if (launched_by_mpi()) GTEST_SKIP() << "running under an MPI launcher; this checks the case without";
  WorldInfo info;
  info.rank = 7;  // overwritten
  std::unique_ptr<Communicator> comm = make_world_communicator(&info);
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->transport().name(), "local");
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.size, 1);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_EQ(info.local_size, 1);
  EXPECT_FALSE(info.launched_by_mpi);
  EXPECT_FALSE(info.host.empty());

  // The average over one rank is the rank's own data, bit for bit.
  std::vector<float> data = {1.5f, -2.25f, 3.0e-38f, 7.0f};
  std::vector<float> before = data;
  comm->allreduce(data.data(), data.size(), DType::kF32, ReduceOp::kAverage);
  EXPECT_EQ(data, before);
  comm->broadcast(data.data(), data.size() * sizeof(float), 0);
  comm->barrier();
  EXPECT_EQ(data, before);

  int initialized = 1;
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0) << "a single-rank world must not initialize MPI";
}

TEST(Bootstrap, NullInfoIsAllowed) {
  if (launched_by_mpi()) GTEST_SKIP() << "running under an MPI launcher; this checks the case without";
  EXPECT_EQ(make_world_communicator(nullptr)->size(), 1);
}

}  // namespace
}  // namespace petaring
