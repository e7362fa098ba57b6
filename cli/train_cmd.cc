// petaring train RECIPE [--set key.path=value]... [--metrics FILE] [--resume [DIR]]
//
// Runs one rank: alone (no mpirun) or as one of the ranks of an mpirun job, each rank
// driving one virtual GPU (device index = local rank on its host).
// SIGTERM or SIGINT preempts: every rank stops after the same step, a checkpoint is
// written, and the process exits with kPreemptedExitCode (75, trainer/train.h).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/commands.h"
#include "collectives/bootstrap.h"
#include "device/amd/amd_device.h"
#include "device/amd/mock/mock_devices.h"
#include "device/cpu/cpu_device.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring::cli {
namespace {

struct TrainArgs {
  std::string recipe;
  std::vector<std::string> overrides;
  std::string metrics;
  std::vector<std::string> resume;  // --resume given: empty or {DIR}
  bool resume_given = false;
};

// devices.kind amd: the GPU numbered by the local rank in KFD's topology. With
// PETARING_AMD_MOCK_SYSFS naming a sysfs tree (tests/fixtures/amd/<box>/sys), that tree's
// GPUs over the mock KFD instead: the amd driver runs, no GPU is used.
std::unique_ptr<Device> open_amd_rank_device(const WorldInfo& world) {
  const char* mock = std::getenv(amd::kMockSysfsVariable);
  if (mock != nullptr && *mock != '\0') {
    PR_LOG(kWarn) << "devices.kind amd over the mock KFD (" << amd::kMockSysfsVariable << "="
                  << mock << "): kernels run on the CPU, no GPU is used";
    return std::move(amd::open_mock_amd_devices(mock, {}, {}, world.local_rank).front());
  }
  return std::move(
      amd::open_amd_devices(amd::make_real_sys(), amd::kSysfsRoot, {}, world.local_rank).front());
}

std::unique_ptr<Device> open_rank_device(const DevicesConfig& config, const WorldInfo& world) {
  if (config.kind == "amd") return open_amd_rank_device(world);
  if (config.kind != "cpu") {
    PR_FAIL(kUnimplemented, "devices.kind '", config.kind, "' is not available in this build; use cpu");
  }
  int count = config.count > 0 ? static_cast<int>(config.count) : world.local_size;
  if (world.local_rank >= count) {
    PR_FAIL(kInvalidArgument, "rank ", world.rank, " on host ", world.host, " has local rank ",
            world.local_rank, " but devices.count is ", count,
            ": start at most that many ranks per host, or raise devices.count");
  }
  CpuDeviceOptions options;
  options.count = count;
  options.memory_bytes = config.memory_bytes;
  // GEMM threads: the recipe's value, else this host's cores shared by its local ranks.
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.threads = config.threads > 0 ? static_cast<int>(config.threads)
                                       : std::max(1, cores / std::max(1, world.local_size));
  // This process drives one virtual GPU; open just that one, numbered by local rank.
  auto devices = open_cpu_devices(options);
  return std::move(devices[static_cast<size_t>(world.local_rank)]);
}

int run_train(const TrainArgs& args) {
  // The recipe is checked before anything starts, so that every rank fails the same way.
  Recipe recipe = load_recipe(args.recipe, args.overrides);
  install_preemption_handlers();
  WorldInfo world;
  CollectiveSettings collectives;  // the recipe's collectives section (the environment wins)
  collectives.transport = recipe.collectives.transport;
  collectives.hierarchical = recipe.collectives.hierarchical;
  collectives.timeout = std::chrono::milliseconds(
      static_cast<int64_t>(std::ceil(recipe.collectives.timeout_s * 1000)));
  std::unique_ptr<Communicator> comm = make_world_communicator(&world, collectives);
  auto train = [&] {
    std::unique_ptr<Device> device = open_rank_device(recipe.devices, world);
    TrainOptions options;
    options.stop_requested = preemption_requested;
    options.metrics_path = world.rank == 0 ? args.metrics : "";
    options.resume = args.resume_given;
    if (!args.resume.empty()) options.resume_dir = args.resume.front();
    return run_training(recipe, *comm, *device, options).preempted ? kPreemptedExitCode : 0;
  };
  if (world.size == 1) return train();  // errors reach main(), which prints them and exits
  // Several ranks: a failure on one must not leave the others waiting on it, so this
  // rank reports (naming itself) and takes the whole job down.
  int exit_code = 1;
  std::string what;
  try {
    return train();
  } catch (const Error& e) {
    exit_code = e.exit_code();
    what = e.what();
  } catch (const std::exception& e) {
    what = str_cat("unexpected: ", e.what());
  }
  std::fprintf(stderr, "petaring: error on rank %d (host %s): %s\n", world.rank,
               world.host.c_str(), what.c_str());
  std::fflush(stderr);
  abort_world(exit_code);
}

}  // namespace

void register_train(CLI::App& app, CommandTable& table) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "train the model a recipe describes");
  sub->add_option("recipe", args->recipe, "recipe YAML file")->required();
  sub->add_option("--set", args->overrides,
                  "override a recipe field, e.g. --set training.batch_size=32 (repeatable)");
  sub->add_option("--metrics", args->metrics, "write metrics as JSONL to this file (rank 0)");
  CLI::Option* resume = sub->add_option(
      "--resume", args->resume,
      "continue from the newest intact checkpoint in DIR (default: the recipe's checkpoint.dir)");
  resume->expected(0, 1)->type_name("[DIR]");
  table.entries.emplace_back(sub, [args, resume] {
    args->resume_given = resume->count() > 0;
    return run_train(*args);
  });
}

}  // namespace petaring::cli
