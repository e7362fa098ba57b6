// petaring: a thin main that dispatches sub-commands to the libraries.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "runtime/error.h"
#include "runtime/log.h"

int main(int argc, char** argv) {
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
