// Bootstrap: which group this process belongs to, and the Communicator over it.
//
// Under mpirun (Open MPI, MPICH, or any PMI/PMIx launcher) the world is MPI_COMM_WORLD
// and the transport is MPI, unless PETARING_TRANSPORT (or the recipe) asks for shm, tcp or
// auto: then the ranks meet through a store served by rank 0 (the MPI store, mpi_store.h,
// when every rank is on one host; across hosts a TCP store, its address sent with
// MPI_Bcast), and the transport is built as below (MPI stays initialized for the job,
// e.g. for `bench --baseline mpi`).
// Under `petaring launch` (PETARING_RANK, PETARING_WORLD_SIZE, PETARING_LOCAL_RANK,
// PETARING_LOCAL_WORLD_SIZE and PETARING_STORE=host:port in the environment) the ranks
// meet through the launcher's TCP store. Either way they publish their host names there
// (PETARING_HOST_ID overrides the name: tests fake hosts with it) and each pair of ranks
// gets the first link that fits: shared memory (transport/shm) between ranks on one host,
// the network (TCP; MPI under mpirun) between hosts (transport/composite_transport.h).
// PETARING_TRANSPORT=shm or =tcp forces one for every pair (shm fails with
// kInvalidArgument when the ranks span hosts); rank 0 logs the choice once.
// Otherwise the process is a world of one and MPI is never touched.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "collectives/communicator.h"

namespace petaring {

struct WorldInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;   // rank among the processes on this host
  int local_size = 1;
  std::string host;
  bool launched_by_mpi = false;
  bool launched_by_petaring = false;  // `petaring launch`: TCP store, shm or TCP transport
};

// True when the environment shows an MPI launcher (OMPI_COMM_WORLD_SIZE, PMIX_RANK,
// PMI_SIZE, PMI_RANK).
bool launched_by_mpi();

// True when PETARING_STORE is set (by `petaring launch`) and no MPI launcher is seen.
bool launched_by_petaring();

// Collective settings from a recipe (the trainer's `collectives:` section). Empty or
// zero: not set. The environment variables PETARING_TRANSPORT, PETARING_HIERARCHICAL and
// PETARING_COLLECTIVE_TIMEOUT, when set and non-empty, win over them.
struct CollectiveSettings {
  std::string transport;     // "", "auto", "shm", "tcp", "mpi" (mpi: under mpirun only)
  std::string hierarchical;  // "", "auto", "on", "off"
  std::chrono::milliseconds timeout{0};  // 0: Communicator::kDefaultTimeout
};

// Creates the world communicator and fills `info` (which may be null). Under mpirun it
// initializes MPI (MPI_THREAD_SERIALIZED or better) unless already initialized; the
// returned communicator then owns MPI, and destroying it finalizes MPI, exactly once.
// Call it once per process. Logs the transport and algorithms once (rank 0, info) and
// sets the rank shown in log lines.
std::unique_ptr<Communicator> make_world_communicator(WorldInfo* info,
                                                      const CollectiveSettings& settings = {});

// Ends the whole job after a fatal error on this rank, so that no other rank waits for
// it: MPI_Abort(MPI_COMM_WORLD, exit_code) when MPI is initialized (the launcher then
// stops every rank), plain exit(exit_code) otherwise (under `petaring launch` the launcher
// then stops the other ranks). Only the top of a rank calls it.
[[noreturn]] void abort_world(int exit_code);

}  // namespace petaring
