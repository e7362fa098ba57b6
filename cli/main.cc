// petaring: a thin main that dispatches sub-commands to the libraries.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "runtime/error.h"
#include "runtime/log.h"

namespace {

// oneDNN's GEMM threads are OpenMP threads, and by default OpenMP spin-waits between
// parallel regions: on a busy machine (or with more ranks than cores) that spinning
// steals the cores the other threads need and GEMMs get 10x slower or worse. The wait
// policy is read once when the OpenMP runtime loads, before main, so when the user has
// not chosen one, choose "passive" and start again with it set. OMP_WAIT_POLICY=active
// in the environment opts out.
void ensure_openmp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  // exec failed (no /proc?): carry on with the default policy.
}

}  // namespace

int main(int argc, char** argv) {
  ensure_openmp_wait_policy(argv);
  CLI::App app{"petaring: train neural networks across many GPUs and machines"};
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log", log_level, "log level: debug, info, warn, error");
  petaring::cli::CommandTable commands;
  petaring::cli::register_commands(app, commands);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!log_level.empty()) {
    petaring::LogLevel level;
    if (!petaring::parse_log_level(log_level, &level)) {
      std::cerr << "petaring: unknown --log level '" << log_level
                << "'; use debug, info, warn or error\n";
      return 2;
    }
    petaring::set_log_level(level);
  }
  try {
    return commands.run();
  } catch (const petaring::Error& e) {
    std::cerr << "petaring: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "petaring: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
