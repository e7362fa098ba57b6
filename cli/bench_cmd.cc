// `petaring bench`: the parent of every benchmark sub-command (see cli/bench.h).
#include "cli/bench.h"

namespace petaring::cli {

void register_bench(CLI::App& app, CommandTable& table) {
  CLI::App* bench = app.add_subcommand(
      "bench", "measure petaring's building blocks (a table, or JSON lines with --json)");
  bench->require_subcommand(1);
  register_bench_gemm(*bench, table);
  register_bench_train(*bench, table);
  register_bench_collectives(*bench, table);
  register_bench_scheduler(*bench, table);
  register_bench_pool(*bench, table);
}

}  // namespace petaring::cli
