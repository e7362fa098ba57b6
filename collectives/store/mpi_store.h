// MPI store: the Store of a job started by mpirun, carried by MPI itself.
//
// Rank 0 holds the table in memory and serves it from a service thread; the other ranks
// send it requests over a private duplicate of the communicator (MPI_Comm_dup, so the
// store's messages never meet anyone else's) and wait for the reply. Request:
// [u8 op][u32 key bytes][key][payload] (set: the value; get: the timeout in ms as i64;
// add: the delta as i64; close: nothing) with tag kRequestTag; reply: [u8 status][bytes]
// with tag kReplyTag. A get for a missing key waits on rank 0 (its deadline kept there, so
// that a late reply never meets a later request), so a blocked get costs no traffic.
// Rank 0's own calls use the table directly.
//
// Lifetime: the constructor and the destructor are collective over the communicator.
// Every rank but 0 says "close" in its destructor; rank 0's destructor serves until all
// have, then stops its thread, so no rank loses the store while it still needs it.
//
// Threads: every MPI call is made under mpi_call_mutex() (mpi_transport.h), so
// MPI_THREAD_SERIALIZED is enough; while an MpiStore exists on rank 0, other MPI calls
// of that process must take that lock too (petaring's MPI transports do). The service
// thread polls with MPI_Iprobe, sleeping between polls with a backoff (at most 1 ms).
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>

#include "collectives/store/store.h"

namespace petaring {

class MpiStore : public Store {
 public:
  // Collective over `comm` (which must outlive the store). Throws kFailedPrecondition when
  // MPI is not initialized or its thread level is below MPI_THREAD_SERIALIZED.
  explicit MpiStore(MPI_Comm comm);
  ~MpiStore() override;
  MpiStore(const MpiStore&) = delete;
  MpiStore& operator=(const MpiStore&) = delete;

  void set(const std::string& key, const std::string& value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  int64_t add(const std::string& key, int64_t delta) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace petaring
