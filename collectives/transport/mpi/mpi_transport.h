// MPI point-to-point transport: MPI_Isend / MPI_Irecv over a private duplicate of a
// communicator, completed by polling MPI_Test.
//
// Waiting spins on MPI_Test for spin_polls calls, then keeps polling but yields the core
// between polls for yield_window, and only then sleeps between polls with a growing
// backoff (up to max_sleep). Yielding rather than sleeping matters: Open MPI moves a large
// shared-memory message fragment by fragment, only inside MPI calls on both sides, so a
// sleeping receiver stalls the sender (a 8 MiB message took 10x longer with sleeps);
// yielding still hands the core over when ranks are oversubscribed on few cores.
// Every MPI call returns its error (MPI_ERRORS_RETURN); a failure becomes an Error of kind
// kDisconnected naming the peer. A request with no completed piece for the wait's timeout
// throws kTimeout naming the peer. Messages above max_piece_bytes (MPI counts are int) travel
// as several MPI messages with the same tag, which MPI keeps in order; both sides must use
// the same max_piece_bytes.
//
// Threads: any thread may use the transport: every MPI call of the transports in this
// process is made under one process-wide mutex (so MPI_THREAD_SERIALIZED is enough).
// split() is MPI_Comm_split over this transport's communicator.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/transport.h"

namespace petaring {

// The lock every MPI call of petaring's collectives is made under (the MPI transports and
// the MPI store), so that MPI_THREAD_SERIALIZED is enough.
std::mutex& mpi_call_mutex();

struct MpiTransportOptions {
  size_t max_piece_bytes = size_t{1} << 30;  // at most INT_MAX
  int spin_polls = 1000;                     // MPI_Test calls before yielding
  std::chrono::milliseconds yield_window{50};  // yield between polls this long without progress
  std::chrono::microseconds max_sleep{200};  // then sleep between polls, at most this long
};

class MpiTransport : public Transport {
 public:
  // Duplicates `comm` (MPI must be initialized). When `finalize_mpi` is true the destructor
  // also calls MPI_Finalize: the bootstrap passes it when it initialized MPI itself.
  explicit MpiTransport(MPI_Comm comm, MpiTransportOptions options = {},
                        bool finalize_mpi = false);
  ~MpiTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }
  std::unique_ptr<Request> isend(int peer, const void* data, size_t bytes,
                                 uint64_t tag) override;
  std::unique_ptr<Request> irecv(int peer, void* data, size_t bytes, uint64_t tag) override;

  void abort() override { aborted_.store(true); }
  std::unique_ptr<Transport> split(const std::vector<int>& members, uint64_t group_id, int color,
                                   int key) override;

  MPI_Comm comm() const { return comm_; }

 private:
  int mpi_tag(uint64_t tag) const;
  void check_peer(int peer) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  MpiTransportOptions options_;
  bool finalize_mpi_;
  int rank_ = 0;
  int size_ = 1;
  int tag_upper_bound_ = 32767;  // MPI guarantees at least this
  std::atomic<bool> aborted_{false};
};

// "MPI_ERR_TRUNCATE: message truncated" for an MPI error code.
std::string mpi_error_text(int code);

}  // namespace petaring
