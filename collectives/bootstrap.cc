#include "collectives/bootstrap.h"

#include <mpi.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "collectives/ring.h"
#include "collectives/transport/local/local_transport.h"
#include "collectives/transport/mpi/mpi_transport.h"
#include "collectives/store/tcp_store.h"
#include "collectives/transport/shm/shm_transport.h"
#include "collectives/transport/tcp/tcp_transport.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

const char* const kLauncherVariables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                          "PMI_RANK"};

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

// An integer environment variable, or `fallback` when unset or malformed.
int env_int(const char* variable, int fallback) {
  const char* text = std::getenv(variable);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  return (*end == '\0' && value >= 0 && value <= INT_MAX) ? static_cast<int>(value) : fallback;
}

// Initializes MPI when nobody has; returns true when this call did (and so must finalize).
bool initialize_mpi() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    PR_FAIL(kFailedPrecondition, "MPI was already finalized in this process; create the world "
            "communicator once and keep it for the life of the process");
  }
  int provided = MPI_THREAD_SINGLE;
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (code != MPI_SUCCESS) {
      PR_FAIL(kFailedPrecondition, "MPI_Init_thread failed: ", mpi_error_text(code),
              "; check the mpirun command line and the MPI installation");
    }
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    PR_LOG(kWarn) << "MPI provides thread level " << provided
                  << ", below MPI_THREAD_SERIALIZED; use collectives from the main thread only";
  }
  return !initialized;
}

// Fills local rank and size: from Open MPI's variables, else from a shared-memory split.
void find_local_rank(MPI_Comm world, WorldInfo* info) {
  info->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", -1);
  info->local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", -1);
  if (info->local_rank >= 0 && info->local_size > 0) return;
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, info->rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &info->local_rank);
  MPI_Comm_size(node, &info->local_size);
  MPI_Comm_free(&node);
}

std::unique_ptr<Communicator> make_mpi_world(WorldInfo* info) {
  bool owns_mpi = initialize_mpi();
  // From here the transport owns MPI: any error below unwinds through its destructor.
  auto transport = std::make_unique<MpiTransport>(MPI_COMM_WORLD, MpiTransportOptions{}, owns_mpi);
  info->rank = transport->rank();
  info->size = transport->size();
  info->launched_by_mpi = true;
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  info->host = MPI_Get_processor_name(name, &length) == MPI_SUCCESS ? std::string(name, length)
                                                                     : host_name();
  find_local_rank(transport->comm(), info);
  return std::make_unique<Communicator>(std::move(transport));
}

// A required integer variable set by `petaring launch`.
int launch_variable(const char* variable) {
  int value = env_int(variable, -1);
  if (value < 0) {
    const char* text = std::getenv(variable);
    PR_FAIL(kInvalidArgument, variable, " is ", text == nullptr ? "unset" : str_cat("'", text, "'"),
            " but PETARING_STORE is set; start ranks with `petaring launch -n N -- ...`, ",
            "which sets PETARING_RANK, PETARING_WORLD_SIZE, PETARING_LOCAL_RANK and ",
            "PETARING_LOCAL_WORLD_SIZE");
  }
  return value;
}

// PETARING_TRANSPORT: "tcp", "shm", or unset / "" (automatic).
std::string requested_transport() {
  const char* text = std::getenv("PETARING_TRANSPORT");
  std::string value = text == nullptr ? "" : text;
  if (value != "" && value != "tcp" && value != "shm") {
    PR_FAIL(kInvalidArgument, "PETARING_TRANSPORT is '", value,
            "'; use tcp, shm, or leave it unset to pick shm when every rank is on one host");
  }
  return value;
}

// Publishes this rank's host name under "host/<rank>" and decides, identically on every
// rank, between shm (every rank on one host, or forced) and tcp. Rank 0 logs the choice.
bool choose_shm(Store& store, const WorldInfo& info) {
  std::string requested = requested_transport();
  store.set(str_cat("host/", info.rank), info.host);
  std::string other_host;
  int other_rank = -1;
  for (int rank = 0; rank < info.size && other_rank < 0; ++rank) {
    std::string host = store.get(str_cat("host/", rank), std::chrono::seconds(120));
    if (host != info.host) other_host = host, other_rank = rank;
  }
  bool one_host = other_rank < 0;
  if (requested == "shm" && !one_host) {
    PR_FAIL(kInvalidArgument, "PETARING_TRANSPORT=shm but rank ", other_rank, " runs on host '",
            other_host, "' and rank ", info.rank, " on '", info.host,
            "'; the shm transport needs every rank on one host: unset PETARING_TRANSPORT");
  }
  bool shm = requested == "shm" || (requested.empty() && one_host);
  if (info.rank == 0) {
    PR_LOG(kInfo) << "collectives: using the " << (shm ? "shm" : "tcp") << " transport ("
                  << (!requested.empty() ? "forced by PETARING_TRANSPORT"
                      : one_host         ? "every rank on host " + info.host
                                         : "ranks on several hosts")
                  << "; PETARING_TRANSPORT=tcp|shm forces one)";
  }
  return shm;
}

std::unique_ptr<Communicator> make_petaring_world(WorldInfo* info) {
  info->rank = launch_variable("PETARING_RANK");
  info->size = launch_variable("PETARING_WORLD_SIZE");
  info->local_rank = launch_variable("PETARING_LOCAL_RANK");
  info->local_size = launch_variable("PETARING_LOCAL_WORLD_SIZE");
  info->host = host_name();
  info->launched_by_petaring = true;
  if (info->size < 1 || info->rank >= info->size || info->local_rank >= info->local_size) {
    PR_FAIL(kInvalidArgument, "PETARING_RANK ", info->rank, " / PETARING_WORLD_SIZE ", info->size,
            " / PETARING_LOCAL_RANK ", info->local_rank, " / PETARING_LOCAL_WORLD_SIZE ",
            info->local_size, " are inconsistent; start ranks with `petaring launch`");
  }
  set_log_rank(info->rank);
  TcpStore store(std::getenv("PETARING_STORE"));
  if (choose_shm(store, *info)) {
    return std::make_unique<Communicator>(make_shm_transport(store, info->rank, info->size));
  }
  TcpTransportOptions options;
  options.advertise_host = store.local_ip();
  return std::make_unique<Communicator>(make_tcp_transport(store, info->rank, info->size, options));
}

}  // namespace

bool launched_by_petaring() {
  const char* store = std::getenv("PETARING_STORE");
  return store != nullptr && *store != '\0' && !launched_by_mpi();
}

bool launched_by_mpi() {
  for (const char* variable : kLauncherVariables) {
    if (std::getenv(variable) != nullptr) return true;
  }
  return false;
}

std::unique_ptr<Communicator> make_world_communicator(WorldInfo* info) {
  WorldInfo local;
  WorldInfo* world = info != nullptr ? info : &local;
  std::unique_ptr<Communicator> communicator;
  if (launched_by_mpi()) {
    communicator = make_mpi_world(world);
    set_log_rank(world->rank);
  } else if (launched_by_petaring()) {
    *world = WorldInfo{};
    communicator = make_petaring_world(world);
  } else {
    *world = WorldInfo{};
    world->host = host_name();
    communicator = std::make_unique<Communicator>(std::move(make_local_transports(1)[0]));
  }
  communicator->init_hosts();  // PETARING_HOST_ID, else this host's name
  if (world->rank == 0) {
    PR_LOG(kInfo) << "collectives: " << world->size << " rank(s) over the "
                  << communicator->transport().name() << " transport"
                  << (world->launched_by_mpi         ? " (launched by mpirun)"
                      : world->launched_by_petaring ? " (petaring launch)"
                                                    : " (no mpirun)")
                  << "; allreduce: recursive doubling up to the small-message threshold, "
                  << "ring (reduce-scatter + allgather, pipelined) above it; broadcast: "
                  << "pipelined chain; barrier: dissemination";
  }
  return communicator;
}

void abort_world(int exit_code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace petaring
