#include "cli/commands.h"

namespace petaring::cli {

void register_commands(CLI::App& app, CommandTable& table) {
  register_devices(app, table);
  register_train(app, table);
  register_bench(app, table);
  register_launch(app, table);
  register_coordinator(app, table);
  register_worker(app, table);
  register_pool_clients(app, table);
  register_plot(app, table);
}

}  // namespace petaring::cli
