// Sub-commands of the petaring program. Each registers its CLI11 sub-command and the
// function to run when it was chosen.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace petaring::cli {

struct CommandTable {
  std::vector<std::pair<CLI::App*, std::function<int()>>> entries;
  // Runs the chosen sub-command; returns the process exit code.
  int run() const {
    for (const auto& [sub, fn] : entries) {
      if (sub->parsed()) return fn();
    }
    return 2;
  }
};

void register_commands(CLI::App& app, CommandTable& table);

// One per file under cli/.
void register_devices(CLI::App& app, CommandTable& table);
void register_train(CLI::App& app, CommandTable& table);
void register_bench(CLI::App& app, CommandTable& table);
void register_launch(CLI::App& app, CommandTable& table);
void register_coordinator(CLI::App& app, CommandTable& table);
void register_worker(CLI::App& app, CommandTable& table);
void register_pool_clients(CLI::App& app, CommandTable& table);
void register_plot(CLI::App& app, CommandTable& table);

}  // namespace petaring::cli
