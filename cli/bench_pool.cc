// `petaring bench pool`: one coordinator (in this process, real SQLite state file) driven
// over loopback by --workers simulated workers heartbeating every --heartbeat-ms and
// --clients clients submitting --jobs one-GPU jobs as fast as they are answered. A
// simulated worker "runs" each rank it is given until its next heartbeat, then reports
// it exited 0, so jobs are placed, started and finished. Reports submissions per second,
// submit and heartbeat latency (p50, p99), and checks that no job was lost: every id a
// submit returned is listed, and every job finished.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli/bench.h"
#include "cluster/client.h"
#include "cluster/connection.h"
#include "cluster/coordinator.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/recipe.h"

namespace petaring::cli {
namespace {

using Clock = std::chrono::steady_clock;
using cluster::Connection;

struct PoolBenchArgs {
  int workers = 1000;
  int devices = 2;
  int64_t jobs = 10000;
  int clients = 4;
  int64_t heartbeat_ms = 1000;
  int threads = 8;  // threads driving the simulated workers
  bool json = false;
};

const char* kSecret = "bench pool secret, 32 bytes long";
const char* kRecipe =
    "model: {type: mlp, layers: [784, 64, 10]}\n"
    "data: {type: fashion_mnist}\n"
    "optimizer: {type: sgd, lr: 0.05}\n"
    "training: {batch_size: 64, max_steps: 10}\n"
    "devices: {kind: cpu}\n";

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())))];
}

struct SimWorker {
  std::unique_ptr<Connection> connection;
  int64_t node_id = 0;
  std::vector<std::tuple<int64_t, uint32_t, uint32_t>> running;
};

// One heartbeat: every rank given last time exits 0; new ranks start.
void beat(SimWorker& w) {
  capnp::MallocMessageBuilder message;
  auto hb = message.initRoot<wire::Envelope>().initHeartbeat();
  hb.setNodeId(w.node_id);
  auto exits = hb.initExits(static_cast<unsigned>(w.running.size()));
  for (size_t i = 0; i < w.running.size(); ++i) {
    exits[i].setJobId(std::get<0>(w.running[i]));
    exits[i].setAttempt(std::get<1>(w.running[i]));
    exits[i].setRank(std::get<2>(w.running[i]));
  }
  w.running.clear();
  auto reply = w.connection->call(message);
  for (auto start : reply->envelope().getHeartbeatReply().getStart()) {
    for (uint32_t rank : start.getRanks()) w.running.emplace_back(start.getJobId(), start.getAttempt(), rank);
  }
}

int run_bench_pool(const PoolBenchArgs& args) {
  namespace fs = std::filesystem;
  if (log_level() == LogLevel::kInfo) set_log_level(LogLevel::kWarn);  // not a line per job
  fs::path dir = fs::temp_directory_path() / ("petaring-bench-pool-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  cluster::CoordinatorOptions options;
  options.listen = "127.0.0.1:0";
  options.state_path = (dir / "pool.db").string();
  options.secret = kSecret;
  options.heartbeat_timeout = std::chrono::milliseconds(args.heartbeat_ms * 30);
  parse_recipe(kRecipe, "bench.yaml");  // fails here, not in a client thread
  auto coordinator = std::make_unique<cluster::Coordinator>(options);
  std::string address = coordinator->address();

  // Workers register, then heartbeat on `threads` threads until the submissions are done
  // and every job has finished.
  std::vector<SimWorker> workers(static_cast<size_t>(args.workers));
  for (int i = 0; i < args.workers; ++i) {
    cluster::ConnectOptions c{address, wire::Role::WORKER, "sim-" + std::to_string(i), kSecret};
    workers[i].connection = std::make_unique<Connection>(c);
    capnp::MallocMessageBuilder message;
    auto reg = message.initRoot<wire::Envelope>().initRegisterNode();
    reg.setName(c.name);
    auto devices = reg.initDevices(static_cast<unsigned>(args.devices));
    for (int d = 0; d < args.devices; ++d) {
      devices[d].setIndex(static_cast<uint32_t>(d));
      devices[d].setKind("cpu");
    }
    workers[i].node_id = workers[i].connection->call(message)->envelope().getRegistered().getNodeId();
  }
  std::atomic<bool> stop{false};
  std::mutex stats_mu;
  std::vector<double> heartbeat_ms, submit_ms;
  std::vector<std::thread> drivers;
  for (int t = 0; t < args.threads; ++t) {
    drivers.emplace_back([&, t] {
      std::vector<double> local;
      auto next = Clock::now();
      while (!stop) {
        for (size_t i = static_cast<size_t>(t); i < workers.size(); i += static_cast<size_t>(args.threads)) {
          auto begin = Clock::now();
          beat(workers[i]);
          local.push_back(std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
        }
        next += std::chrono::milliseconds(args.heartbeat_ms);
        std::this_thread::sleep_until(next);
      }
      std::lock_guard<std::mutex> lock(stats_mu);
      heartbeat_ms.insert(heartbeat_ms.end(), local.begin(), local.end());
    });
  }

  // Clients submit as fast as they are answered.
  std::vector<int64_t> ids;
  std::atomic<int64_t> next_job{0};
  auto submit_begin = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < args.clients; ++c) {
    clients.emplace_back([&] {
      cluster::PoolClient client({address, kSecret});
      std::vector<double> local;
      std::vector<int64_t> local_ids;
      while (next_job.fetch_add(1) < args.jobs) {
        auto begin = Clock::now();
        local_ids.push_back(client.submit_text(kRecipe, "bench.yaml", 1, 0, "bench"));
        local.push_back(std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
      }
      std::lock_guard<std::mutex> lock(stats_mu);
      submit_ms.insert(submit_ms.end(), local.begin(), local.end());
      ids.insert(ids.end(), local_ids.begin(), local_ids.end());
    });
  }
  for (auto& c : clients) c.join();
  double submit_seconds = std::chrono::duration<double>(Clock::now() - submit_begin).count();

  // Wait for every job to finish (bounded), then check nothing was lost.
  cluster::PoolClient observer({address, kSecret});
  nlohmann::json jobs;
  int64_t finished = 0;
  auto deadline = Clock::now() + std::chrono::milliseconds(args.heartbeat_ms * 60);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(args.heartbeat_ms));
    jobs = observer.jobs();
    finished = std::count_if(jobs.begin(), jobs.end(), [](const nlohmann::json& j) { return j["state"] == "finished"; });
  } while (finished < args.jobs && Clock::now() < deadline);
  double total_seconds = std::chrono::duration<double>(Clock::now() - submit_begin).count();
  stop = true;
  for (auto& d : drivers) d.join();
  std::set<int64_t> listed;
  for (const auto& j : jobs) listed.insert(j["id"].get<int64_t>());
  int64_t lost = 0;
  for (int64_t id : ids) lost += listed.count(id) ? 0 : 1;
  lost += args.jobs - static_cast<int64_t>(std::set<int64_t>(ids.begin(), ids.end()).size());
  coordinator.reset();
  fs::remove_all(dir);

  double rate = static_cast<double>(args.jobs) / submit_seconds;
  if (args.json) {
    nlohmann::json row = {{"bench", "pool"}, {"workers", args.workers}, {"gpus", args.workers * args.devices},
                          {"submissions", args.jobs}, {"submit_per_s", rate},
                          {"submit_p50_ms", percentile(submit_ms, 0.5)}, {"submit_p99_ms", percentile(submit_ms, 0.99)},
                          {"heartbeats", heartbeat_ms.size()}, {"heartbeat_p50_ms", percentile(heartbeat_ms, 0.5)},
                          {"heartbeat_p99_ms", percentile(heartbeat_ms, 0.99)}, {"finished", finished},
                          {"lost", lost}, {"all_finished_s", total_seconds}};
    std::printf("%s\n", row.dump().c_str());
  } else {
    std::printf("%8s %6s %8s %9s %9s %9s %10s %8s %8s %9s %5s %8s\n", "workers", "gpus", "submits", "submit/s",
                "p50(ms)", "p99(ms)", "heartbeats", "hb p50", "hb p99", "finished", "lost", "done(s)");
    std::printf("%8d %6d %8lld %9.0f %9.2f %9.2f %10zu %8.2f %8.2f %9lld %5lld %8.1f\n", args.workers,
                args.workers * args.devices, static_cast<long long>(args.jobs), rate, percentile(submit_ms, 0.5),
                percentile(submit_ms, 0.99), heartbeat_ms.size(), percentile(heartbeat_ms, 0.5),
                percentile(heartbeat_ms, 0.99), static_cast<long long>(finished), static_cast<long long>(lost),
                total_seconds);
  }
  return lost == 0 && finished == args.jobs ? 0 : 1;
}

}  // namespace

void register_bench_pool(CLI::App& bench, CommandTable& table) {
  auto args = std::make_shared<PoolBenchArgs>();
  CLI::App* sub = bench.add_subcommand(
      "pool", "a coordinator under simulated workers heartbeating and clients submitting, on loopback");
  sub->add_option("--workers", args->workers, "simulated workers")->capture_default_str();
  sub->add_option("--devices", args->devices, "virtual GPUs per worker")->capture_default_str();
  sub->add_option("--jobs", args->jobs, "submissions (1 GPU each)")->capture_default_str();
  sub->add_option("--clients", args->clients, "concurrent submitting clients")->capture_default_str();
  sub->add_option("--heartbeat-ms", args->heartbeat_ms, "heartbeat period of each worker")->capture_default_str();
  sub->add_option("--threads", args->threads, "threads driving the workers")->capture_default_str();
  sub->add_flag("--json", args->json, "one JSON line");
  table.entries.emplace_back(sub, [args] { return run_bench_pool(*args); });
}

}  // namespace petaring::cli
