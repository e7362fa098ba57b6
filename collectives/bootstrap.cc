#include "collectives/bootstrap.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <thread>
#include <cstdlib>

#include "collectives/ring.h"
#include "collectives/transport/local/local_transport.h"
#include "collectives/transport/mpi/mpi_transport.h"
#include "collectives/store/prefix_store.h"
#include "collectives/store/mpi_store.h"
#include "collectives/store/tcp_store.h"
#include "collectives/transport/composite_transport.h"
#include "collectives/transport/shm/shm_transport.h"
#include "collectives/transport/tcp/tcp_transport.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace petaring {
namespace {

const char* const kLauncherVariables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                          "PMI_RANK"};

// This rank's host: PETARING_HOST_ID when set (tests fake hosts with it), else the name.
std::string host_name() {
  if (const char* fake = std::getenv("PETARING_HOST_ID"); fake != nullptr && *fake != '\0') {
    return fake;
  }
  return local_host_name();
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

// PETARING_TRANSPORT: "", "auto", "shm", "tcp", or (under mpirun) "mpi"; when unset or
// empty, the recipe's choice (`from_recipe`, already checked against that list).
std::string requested_transport(bool under_mpi, const std::string& from_recipe) {
  const char* text = std::getenv("PETARING_TRANSPORT");
  std::string value = text == nullptr ? "" : text;
  if (value.empty() && from_recipe == "mpi" && !under_mpi) {
    PR_FAIL(kInvalidArgument, "the recipe's collectives.transport is 'mpi' but this job was ",
            "not started by mpirun; use auto, shm or tcp, or start it with mpirun");
  }
  if (value.empty()) return from_recipe;
  bool known = value == "" || value == "auto" || value == "tcp" || value == "shm" ||
               (under_mpi && value == "mpi");
  if (!known) {
    PR_FAIL(kInvalidArgument, "PETARING_TRANSPORT is '", value, "'; use shm, tcp",
            under_mpi ? ", mpi" : "", " or auto (or leave it unset: ",
            under_mpi ? "mpi under mpirun" : "shm within a host, tcp across hosts", ")");
  }
  return value;
}

// Shared-memory waits for `ranks` ranks on this host: with more ranks than cores a spinning
// rank takes the core from the rank it waits for, so oversubscribed ranks do not spin at
// all: after one empty poll they yield the core between polls for up to 1 ms without
// progress (the rank that runs instead is often the one they wait for), then sleep on
// their doorbell (shm_transport.h), woken by the peer's bytes. Measured at 4 and 6 ranks
// on 2 cores (docs/benchmarks.md): 50 polls before yielding cost 1.2-1.8x the time of no
// polls for 4-64 KiB allreduces, and a 5 ms yield window was no better than 1 ms.
ShmTransportOptions shm_options(int ranks) {
  ShmTransportOptions options;
  if (ranks > static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {
    options.spin_polls = 0;
    options.yield_window = std::chrono::milliseconds(1);
    options.max_sleep = std::chrono::microseconds(2000);
  }
  return options;
}

// Builds the world's transport through `store`: publishes this rank's host under
// "host/<rank>", reads everyone's and routes each pair by PETARING_TRANSPORT, the same on
// every rank: shm (every rank on one host), tcp, or auto (shm for the pairs on one host,
// the network for the others: `network`, the MPI transport under mpirun, else tcp). `mpi`
// (under mpirun, may be null otherwise) is kept inside the result either way, so that MPI
// lives as long as the world. Rank 0 logs the choice once.
std::unique_ptr<Transport> build_world_transport(Store& store, const WorldInfo& info,
                                                 const std::string& requested,
                                                 std::unique_ptr<Transport> mpi) {
  const int n = info.size, me = info.rank;
  store.set(str_cat("host/", me), info.host);
  std::vector<std::string> hosts(static_cast<size_t>(n));
  std::vector<int> host_of(static_cast<size_t>(n));
  std::vector<std::string> distinct;
  for (int r = 0; r < n; ++r) {
    hosts[r] = store.get(str_cat("host/", r), std::chrono::seconds(120));
    auto found = std::find(distinct.begin(), distinct.end(), hosts[r]);
    host_of[r] = static_cast<int>(found - distinct.begin());
    if (found == distinct.end()) distinct.push_back(hosts[r]);
  }
  const bool one_host = distinct.size() == 1;
  if (requested == "shm" && !one_host) {
    int other = static_cast<int>(std::find_if(hosts.begin(), hosts.end(),
                                              [&](const std::string& h) { return h != info.host; }) -
                                 hosts.begin());
    PR_FAIL(kInvalidArgument, "transport shm (PETARING_TRANSPORT or the recipe's collectives.transport) but rank ", other, " runs on host '",
            hosts[other], "' and rank ", me, " on '", info.host,
            "'; the shm transport needs every rank on one host: use auto or tcp");
  }
  std::vector<int> everyone(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) everyone[r] = r;
  std::vector<TransportPart> parts;
  std::vector<int> route(static_cast<size_t>(n), 0);
  std::string name, why;
  auto make_tcp = [&] {
    TcpTransportOptions options;
    if (std::string ip = store.local_ip(); !ip.empty()) options.advertise_host = ip;
    if (info.local_size > static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {
      options.spin = std::chrono::microseconds(0);  // oversubscribed: sleep in poll at once
    }
    return make_tcp_transport(store, me, n, options);
  };
  if (requested == "shm" || requested == "tcp") {
    parts.push_back({requested == "shm" ? make_shm_transport(store, me, n, shm_options(n)) : make_tcp(), everyone});
    name = requested;
    why = "forced by PETARING_TRANSPORT or the recipe's collectives.transport";
  } else if (one_host) {
    parts.push_back({make_shm_transport(store, me, n, shm_options(n)), everyone});
    name = "shm";
    why = "every rank on host " + info.host;
  } else {
    // Same host: shared memory among the host's ranks (its own key space in the store);
    // other hosts: the network.
    std::vector<int> mine;
    for (int r = 0; r < n; ++r) {
      if (host_of[r] == host_of[me]) mine.push_back(r);
    }
    PrefixStore host_store(store, str_cat("h", host_of[me], "/"));
    int local_rank = static_cast<int>(std::find(mine.begin(), mine.end(), me) - mine.begin());
    parts.push_back({make_shm_transport(host_store, local_rank, static_cast<int>(mine.size()),
                                        shm_options(static_cast<int>(mine.size()))), mine});
    if (mpi != nullptr) {
      parts.push_back({std::move(mpi), everyone});
      name = "shm+mpi";
    } else {
      parts.push_back({make_tcp(), everyone});
      name = "shm+tcp";
    }
    for (int r = 0; r < n; ++r) route[r] = host_of[r] == host_of[me] ? 0 : 1;
    why = str_cat(distinct.size(), " hosts: shm between ranks on one host, ",
                  name.substr(4), " across hosts");
  }
  if (mpi != nullptr) parts.push_back({std::move(mpi), everyone});  // unrouted: keeps MPI alive
  if (me == 0) {
    PR_LOG(kInfo) << "collectives: using the " << name << " transport (" << why
                  << "; PETARING_TRANSPORT=tcp|shm" << (info.launched_by_mpi ? "|mpi" : "")
                  << "|auto forces one)";
  }
  return make_composite_transport(me, n, std::move(parts), std::move(route), name);
}

std::unique_ptr<Communicator> make_mpi_world(WorldInfo* info, const std::string& recipe_transport) {
  bool owns_mpi = initialize_mpi();
  // From here the transport owns MPI: any error below unwinds through its destructor.
  auto transport = std::make_unique<MpiTransport>(MPI_COMM_WORLD, MpiTransportOptions{}, owns_mpi);
  info->rank = transport->rank();
  info->size = transport->size();
  info->launched_by_mpi = true;
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  const char* fake = std::getenv("PETARING_HOST_ID");
  info->host = fake != nullptr && *fake != '\0'                         ? std::string(fake)
               : MPI_Get_processor_name(name, &length) == MPI_SUCCESS ? std::string(name, length)
                                                                       : host_name();
  find_local_rank(transport->comm(), info);
  std::string requested = requested_transport(/*under_mpi=*/true, recipe_transport);
  if (requested.empty() || requested == "mpi") {
    return std::make_unique<Communicator>(std::move(transport));
  }
  const bool one_host = info->local_size == info->size;
  if (one_host) {
    // The store: MPI itself (mpi_store.h: rank 0 serves it over a duplicate of the world
    // communicator). The ranks' own addresses are loopback ones, the TCP default.
    std::unique_ptr<Transport> world;
    {
      MpiStore store(MPI_COMM_WORLD);
      world = build_world_transport(store, *info, requested, std::move(transport));
    }  // collective: every rank is done with the store before rank 0 stops serving it
    return std::make_unique<Communicator>(std::move(world));
  }
  // Across hosts the store is a TCP store served by rank 0 for the start-up, its address
  // sent with MPI_Bcast: each rank then learns from its connection to it the address
  // through which the other hosts reach it, which the TCP transport advertises.
  std::unique_ptr<TcpStoreServer> server;
  char address[256] = {};
  if (info->rank == 0) {
    server = std::make_unique<TcpStoreServer>(0, one_host ? "127.0.0.1" : "0.0.0.0");
    std::snprintf(address, sizeof(address), "%s:%d",
                  one_host ? "127.0.0.1" : host_name().c_str(), server->port());
  }
  MPI_Bcast(address, sizeof(address), MPI_CHAR, 0, transport->comm());
  std::unique_ptr<Transport> world;
  {
    TcpStore store(address);
    world = build_world_transport(store, *info, requested, std::move(transport));
  }
  // Every rank is done with the store before rank 0 stops serving it.
  MPI_Barrier(MPI_COMM_WORLD);
  return std::make_unique<Communicator>(std::move(world));
}

std::unique_ptr<Communicator> make_petaring_world(WorldInfo* info, const std::string& recipe_transport) {
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
  std::unique_ptr<Store> store = open_store(std::getenv("PETARING_STORE"));
  std::string requested = requested_transport(/*under_mpi=*/false, recipe_transport);
  return std::make_unique<Communicator>(build_world_transport(*store, *info, requested, nullptr));
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

std::unique_ptr<Communicator> make_world_communicator(WorldInfo* info,
                                                      const CollectiveSettings& settings) {
  WorldInfo local;
  WorldInfo* world = info != nullptr ? info : &local;
  std::unique_ptr<Communicator> communicator;
  if (launched_by_mpi()) {
    communicator = make_mpi_world(world, settings.transport);
    set_log_rank(world->rank);
  } else if (launched_by_petaring()) {
    *world = WorldInfo{};
    communicator = make_petaring_world(world, settings.transport);
  } else {
    *world = WorldInfo{};
    world->host = host_name();
    communicator = std::make_unique<Communicator>(std::move(make_local_transports(1)[0]));
  }
  // The recipe's settings where the environment left them unset (the environment wins).
  auto unset = [](const char* variable) {
    const char* text = std::getenv(variable);
    return text == nullptr || *text == '\0';
  };
  if (settings.timeout.count() > 0 && unset("PETARING_COLLECTIVE_TIMEOUT")) {
    communicator->set_timeout(settings.timeout);
  }
  if (!settings.hierarchical.empty() && unset("PETARING_HIERARCHICAL")) {
    using Mode = Communicator::Hierarchical;
    communicator->set_hierarchical(settings.hierarchical == "on"    ? Mode::kOn
                                   : settings.hierarchical == "off" ? Mode::kOff
                                                                    : Mode::kAuto);
  }
  communicator->init_hosts();  // PETARING_HOST_ID, else this host's name
  if (world->rank == 0) {
    PR_LOG(kInfo) << "collectives: " << world->size << " rank(s) over the "
                  << communicator->transport().name() << " transport"
                  << (world->launched_by_mpi         ? " (launched by mpirun)"
                      : world->launched_by_petaring ? " (petaring launch)"
                                                    : " (no mpirun)")
                  << "; allreduce: recursive doubling up to "
                  << communicator->small_message_threshold() << " bytes, "
                  << communicator->allreduce_algorithm(communicator->small_message_threshold() + 1)
                  << " above; reduce_scatter and allgather: "
                  << communicator->block_algorithm(communicator->small_message_threshold() + 1)
                  << " above the same threshold, ring below; broadcast: pipelined chain; "
                  << "barrier: dissemination";
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
