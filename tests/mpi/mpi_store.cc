// The MPI store (collectives/store/mpi_store.h) under mpirun: every rank sets, gets and
// adds through one store served by rank 0; a get blocks until another rank sets the key;
// a missing key times out naming it; the store closes cleanly on every rank.
// Exit status 0 when every check passed on this rank, 1 otherwise.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>

#include "collectives/store/mpi_store.h"
#include "runtime/error.h"

namespace petaring {
namespace {

int failures = 0;

void fail(int rank, const std::string& what) {
  std::fprintf(stderr, "[rank %d] FAIL: %s\n", rank, what.c_str());
  ++failures;
}

void run(int rank, int size) {
  using std::chrono::milliseconds;
  MpiStore store(MPI_COMM_WORLD);
  // The last rank asks for a key first; rank 0 sets it only after the keys of ranks
  // 0 to size - 2 arrived, so that get waits on rank 0 until then.
  if (rank == size - 1 && size > 1) {
    std::string late = store.get("late", milliseconds(60000));
    if (late != "done") fail(rank, "get('late') returned '" + late + "'");
  }
  store.set("key/" + std::to_string(rank), std::string("value\0of ", 9) + std::to_string(rank));
  if (rank == 0) {
    for (int r = 0; r < size - 1; ++r) store.get("key/" + std::to_string(r), milliseconds(60000));
    store.set("late", "done");
  }
  for (int r = 0; r < size; ++r) {
    std::string value = store.get("key/" + std::to_string(r), milliseconds(60000));
    if (value != std::string("value\0of ", 9) + std::to_string(r)) {
      fail(rank, "key/" + std::to_string(r) + " read back wrong");
    }
  }
  int64_t ticket = store.add("tickets", 1);
  store.set("ticket/" + std::to_string(rank), std::to_string(ticket));
  if (rank == 0) {
    std::set<std::string> tickets;
    for (int r = 0; r < size; ++r) {
      tickets.insert(store.get("ticket/" + std::to_string(r), milliseconds(60000)));
    }
    for (int t = 1; t <= size; ++t) {
      if (!tickets.count(std::to_string(t))) fail(rank, "no rank drew ticket " + std::to_string(t));
    }
    if (store.get("tickets", milliseconds(1000)) != std::to_string(size)) {
      fail(rank, "the counter does not read back as " + std::to_string(size));
    }
  }
  try {
    store.get("missing/" + std::to_string(rank), milliseconds(100));
    fail(rank, "a get of a key nobody sets returned");
  } catch (const Error& error) {
    std::string what = error.what();
    if (error.kind() != ErrorKind::kTimeout || what.find("missing/" + std::to_string(rank)) == std::string::npos) {
      fail(rank, "unexpected error for a missing key: " + what);
    }
  }
  try {
    store.add("key/0", 1);
    fail(rank, "add() on a key holding text returned");
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::kInvalidArgument) fail(rank, std::string("add: ") + error.what());
  }
}

}  // namespace
}  // namespace petaring

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    petaring::run(rank, size);
  } catch (const std::exception& error) {
    petaring::fail(rank, std::string("unexpected: ") + error.what());
  }
  int mine = petaring::failures, total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Finalize();
  if (rank == 0 && total == 0) std::printf("mpi_store: all checks passed on %d rank(s)\n", size);
  return total == 0 ? 0 : 1;
}
