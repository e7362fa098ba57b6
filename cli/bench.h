// `petaring bench <what>`: one function per benchmark, each defined in cli/bench_<what>.cc
// and called by register_bench() (cli/bench_cmd.cc). Each adds its sub-command under
// `bench` and its entry to the CommandTable. Benchmarks print a table a person can read
// and, with --json, one JSON object per row.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace petaring::cli {

// `petaring bench gemm`: CPU GEMM libraries on the model shapes (cli/bench_gemm.cc).
void register_bench_gemm(CLI::App& bench, CommandTable& table);
// `petaring bench train`: training steps (cli/bench_train.cc).
void register_bench_train(CLI::App& bench, CommandTable& table);
// `petaring bench allreduce | broadcast | reduce_scatter | allgather`: collectives over
// sizes, nccl-tests style, beside MPI (cli/bench_collectives.cc).
void register_bench_collectives(CLI::App& bench, CommandTable& table);
// `petaring bench scheduler`: pool scheduler decisions per second (cli/bench_scheduler.cc).
void register_bench_scheduler(CLI::App& bench, CommandTable& table);
// `petaring bench pool`: a coordinator under simulated workers and clients (cli/bench_pool.cc).
void register_bench_pool(CLI::App& bench, CommandTable& table);

}  // namespace petaring::cli
