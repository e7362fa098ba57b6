// `petaring bench scheduler`: placement decisions per second of the pool's gang
// scheduler (scheduler/scheduler.h) at several pool sizes, with backfill (the default
// policy) beside strict order (no backfill) on the same events.
//
// Workload, seeded and identical for both policies: nodes with 2-8 devices (mixed
// memory, 30% of nodes with USB3 devices, 10% of another device kind); jobs of 1-32
// GPUs (55% single-GPU, tensor-parallel and elastic ones among them), 70% with a
// runtime estimate. Two timed phases per repeat, on a fresh scheduler each time:
//   fill   jobs asking for 1.3x the pool's GPUs are submitted to an empty pool, then one
//          tick() places what fits (the time covers the submits and the tick);
//   churn  `rounds` rounds of: 2% of the running jobs finish, as many new jobs arrive,
//          one device is reclaimed and one given back, then tick(). The pool stays full
//          and the queue long, as in a busy pool.
// Rate = (kStart + kStop decisions) / time of the phase; median over runs. A row gets at
// least `repeats` runs, and more (up to 500) until its churn phases add up to `min_ms`,
// so that the small pools, whose phases last a millisecond or two, are not one noisy
// sample.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/bench.h"
#include "runtime/error.h"
#include "scheduler/scheduler.h"

namespace petaring::cli {
namespace {

namespace sch = petaring::scheduler;

struct SchedulerBenchOptions {
  std::vector<int> nodes = {100, 1000, 10000};
  int repeats = 5;
  double min_ms = 300;
  int rounds = 50;
  uint32_t seed = 1;
};

struct Workload {
  std::vector<sch::NodeInfo> nodes;
  std::vector<sch::JobSpec> jobs;  // in arrival order; ids 1..n
  int64_t gpus = 0;
};

Workload make_workload(int node_count, int rounds, uint32_t seed) {
  std::mt19937_64 rng(seed);
  auto rand = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Workload w;
  for (int id = 1; id <= node_count; ++id) {
    sch::NodeInfo node;
    node.id = id;
    node.name = "host" + std::to_string(id);
    int style = static_cast<int>(rand(0, 9));
    int devices = static_cast<int>(rand(2, 8));
    for (int i = 0; i < devices; ++i) {
      sch::DeviceInfo d;
      d.index = i;
      d.kind = style == 9 ? "gfx1100" : "cpu";
      d.memory_bytes = (int64_t{8} << rand(0, 2)) << 30;
      d.link = style < 3 && rand(0, 1) ? sch::Link::kUsb3 : sch::Link::kPcie;
      d.flops_per_s = 1e12 * static_cast<double>(rand(1, 50));
      node.devices.push_back(d);
    }
    w.gpus += devices;
    w.nodes.push_back(std::move(node));
  }
  // Enough jobs for the fill (1.3x the GPUs) and for every churn round (2% of the pool).
  int64_t wanted = w.gpus * 13 / 10 + static_cast<int64_t>(rounds) * (w.gpus / 40 + 10) * 3;
  const char* tenants[] = {"alice", "bob", "carol", "dave", "erin"};
  for (int64_t asked = 0, id = 1; asked < wanted; ++id) {
    sch::JobSpec spec;
    spec.id = id;
    spec.tenant = tenants[rand(0, 4)];
    spec.priority = rand(0, 9) == 0 ? 1 : 0;
    int size_class = static_cast<int>(rand(0, 99));
    int gpus = size_class < 55 ? 1 : size_class < 75 ? 2 : size_class < 88 ? 4
             : size_class < 96 ? 8 : static_cast<int>(rand(9, 32));
    spec.min_gpus = spec.max_gpus = gpus;
    if (gpus >= 4 && rand(0, 9) < 3) {
      spec.tp_size = gpus >= 8 ? 4 : 2;
      spec.min_gpus = spec.max_gpus = gpus / spec.tp_size * spec.tp_size;
    } else if (rand(0, 19) == 0) {
      spec.max_gpus = gpus * 4;
    }
    spec.memory_per_gpu_bytes = rand(0, 4) == 0 ? int64_t{12} << 30 : 0;
    if (rand(0, 49) == 0) spec.device_kind = "gfx1100";
    spec.expected_runtime_ms = rand(0, 9) < 7 ? rand(5, 900) * 1000 : 0;
    asked += spec.min_gpus;
    w.jobs.push_back(std::move(spec));
  }
  return w;
}

struct PhaseResult {
  double seconds = 0;
  int64_t starts = 0, stops = 0;
  int64_t queued_after = 0;  // jobs waiting when the phase ends
  double busy = 0;           // share of lent GPUs held by jobs when the phase ends
};

struct RepeatResult {
  PhaseResult fill, churn;
};

void finish_phase(const sch::Scheduler& s, PhaseResult& r) {
  r.queued_after = static_cast<int64_t>(s.jobs_in_state(sch::JobState::kQueued).size());
  sch::Scheduler::PoolCounts pool = s.pool();
  r.busy = pool.lent > 0 ? static_cast<double>(pool.lent - pool.free) / pool.lent : 0;
}

void count(const std::vector<sch::Decision>& decisions, PhaseResult& r, std::vector<sch::JobId>& started,
           std::vector<sch::JobId>& stopped) {
  for (const sch::Decision& d : decisions) {
    if (d.action == sch::Decision::Action::kStart) {
      ++r.starts;
      started.push_back(d.job);
    } else {
      ++r.stops;
      stopped.push_back(d.job);
    }
  }
}

RepeatResult run_once(const Workload& w, bool backfill, int rounds, uint32_t seed) {
  using Clock = std::chrono::steady_clock;
  sch::Scheduler s(sch::SchedulerOptions{.backfill = backfill});
  for (const sch::NodeInfo& node : w.nodes) s.add_node(node, 0);
  std::mt19937_64 rng(seed + 1);
  RepeatResult result;
  std::vector<sch::JobId> running, stopping;
  size_t next_job = 0;
  int64_t asked = 0;

  auto t0 = Clock::now();
  while (next_job < w.jobs.size() && asked < w.gpus * 13 / 10) {
    asked += w.jobs[next_job].min_gpus;
    s.submit(w.jobs[next_job++], 0);
  }
  count(s.tick(0), result.fill, running, stopping);
  result.fill.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  finish_phase(s, result.fill);

  // Churn. What is measured is the scheduler's work; choosing victims is cheap and the
  // same for both policies.
  sch::TimeMs now = 0;
  std::vector<std::pair<sch::NodeId, int>> reclaimed;
  t0 = Clock::now();
  for (int round = 0; round < rounds; ++round) {
    now += 10'000;
    size_t finishing = std::max<size_t>(1, running.size() / 50);
    for (size_t k = 0; k < finishing && !running.empty(); ++k) {
      size_t pick = rng() % running.size();
      sch::JobId id = running[pick];
      running[pick] = running.back();
      running.pop_back();
      if (s.job(id).state == sch::JobState::kRunning) {
        s.job_finished(id, now);
      } else if (s.job(id).state == sch::JobState::kStopping) {
        s.job_stopped(id, now);
      }
    }
    for (size_t k = 0; k < finishing && next_job < w.jobs.size(); ++k) s.submit(w.jobs[next_job++], now);
    const sch::NodeInfo& node = w.nodes[rng() % w.nodes.size()];
    int device = node.devices[rng() % node.devices.size()].index;
    count(s.set_device_availability(node.id, device, sch::Availability::kReclaimed, now), result.churn,
          running, stopping);
    reclaimed.emplace_back(node.id, device);
    if (reclaimed.size() > 3) {
      count(s.set_device_availability(reclaimed.front().first, reclaimed.front().second,
                                      sch::Availability::kLent, now),
            result.churn, running, stopping);
      reclaimed.erase(reclaimed.begin());
    }
    for (sch::JobId id : stopping) {
      if (s.job(id).state == sch::JobState::kStopping) s.job_stopped(id, now);  // checkpoint written
    }
    stopping.clear();
    count(s.tick(now), result.churn, running, stopping);
  }
  result.churn.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  finish_phase(s, result.churn);
  return result;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double iqr_percent(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  double m = median(v);
  return m > 0 ? 100.0 * (at(0.75) - at(0.25)) / m : 0;
}

struct Row {
  int nodes = 0;
  int64_t gpus = 0;
  std::string policy, phase;
  int64_t starts = 0, stops = 0, queued_after = 0;
  double busy = 0, median_ms = 0, iqr = 0, decisions_per_s = 0, vs_backfill = 0;
  int runs = 0;
};

std::string first_line(const char* path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown cpu";
}

std::vector<Row> run_bench(const SchedulerBenchOptions& options) {
  if (options.repeats < 1 || options.rounds < 1) {
    PR_FAIL(kInvalidArgument, "bench scheduler: --repeats and --rounds must be >= 1");
  }
  std::vector<Row> rows;
  for (int node_count : options.nodes) {
    if (node_count < 1) PR_FAIL(kInvalidArgument, "bench scheduler: --nodes must be >= 1, got ", node_count);
    Workload w = make_workload(node_count, options.rounds, options.seed);
    std::vector<Row> group;
    for (bool backfill : {true, false}) {
      std::vector<double> fill_rate, churn_rate, fill_ms, churn_ms;
      RepeatResult last;
      double churn_total_ms = 0;
      for (int r = 0; r < 500 && (r < options.repeats || churn_total_ms < options.min_ms); ++r) {
        last = run_once(w, backfill, options.rounds, options.seed);
        fill_ms.push_back(1e3 * last.fill.seconds);
        churn_ms.push_back(1e3 * last.churn.seconds);
        churn_total_ms += 1e3 * last.churn.seconds;
        fill_rate.push_back(static_cast<double>(last.fill.starts + last.fill.stops) / last.fill.seconds);
        churn_rate.push_back(static_cast<double>(last.churn.starts + last.churn.stops) / last.churn.seconds);
      }
      // Same seed, same events: every repeat makes the same decisions.
      std::string policy = backfill ? "backfill" : "strict";
      group.push_back({node_count, w.gpus, policy, "fill", last.fill.starts, last.fill.stops,
                       last.fill.queued_after, last.fill.busy, median(fill_ms), iqr_percent(fill_rate),
                       median(fill_rate), 0, static_cast<int>(fill_ms.size())});
      group.push_back({node_count, w.gpus, policy, "churn", last.churn.starts, last.churn.stops,
                       last.churn.queued_after, last.churn.busy, median(churn_ms),
                       iqr_percent(churn_rate), median(churn_rate), 0, static_cast<int>(churn_ms.size())});
    }
    for (Row& row : group) {
      for (const Row& base : group) {
        if (base.policy == "backfill" && base.phase == row.phase) {
          row.vs_backfill = row.decisions_per_s / base.decisions_per_s;
        }
      }
      rows.push_back(row);
    }
  }
  return rows;
}

void print_table(const std::vector<Row>& rows, const SchedulerBenchOptions& options) {
  std::printf("# petaring bench scheduler: decisions (kStart + kStop) per second, median of >= %d runs "
              "(more until the churn phases add up to %.0f ms); %s, %u cpus\n",
              options.repeats, options.min_ms, cpu_model().c_str(), std::thread::hardware_concurrency());
  std::printf("# fill: 1.3x the pool's GPUs submitted to an empty pool + one tick; churn: %d rounds of "
              "2%% of running jobs finishing, as many arriving, a reclaim, a tick\n",
              options.rounds);
  std::printf("# /proc/loadavg when done: %s\n", first_line("/proc/loadavg").c_str());
  std::printf("# queued, busy%%: jobs waiting and share of lent GPUs held when the phase ends; "
              "vs_backfill: decisions/s over the backfill row's\n");
  std::printf("%-7s %7s %-8s %-5s %7s %6s %7s %6s %4s %10s %5s %12s %11s\n", "# nodes", "gpus",
              "policy", "phase", "starts", "stops", "queued", "busy%", "runs", "median_ms", "iqr%",
              "decisions/s", "vs_backfill");
  for (const Row& r : rows) {
    std::printf("%7d %7lld %-8s %-5s %7lld %6lld %7lld %6.1f %4d %10.2f %5.1f %12.0f %11.2f\n",
                r.nodes, static_cast<long long>(r.gpus), r.policy.c_str(), r.phase.c_str(),
                static_cast<long long>(r.starts), static_cast<long long>(r.stops),
                static_cast<long long>(r.queued_after), 100 * r.busy, r.runs, r.median_ms, r.iqr,
                r.decisions_per_s, r.vs_backfill);
  }
}

void print_json(const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    nlohmann::json line = {{"bench", "scheduler"}, {"nodes", r.nodes},         {"gpus", r.gpus},
                           {"policy", r.policy},   {"phase", r.phase},         {"starts", r.starts},
                           {"stops", r.stops},     {"queued", r.queued_after}, {"busy", r.busy}, {"runs", r.runs}, {"median_ms", r.median_ms},
                           {"iqr_percent", r.iqr}, {"decisions_per_s", r.decisions_per_s},
                           {"vs_backfill", r.vs_backfill}};
    std::cout << line.dump() << "\n";
  }
}

}  // namespace

void register_bench_scheduler(CLI::App& bench, CommandTable& table) {
  auto options = std::make_shared<SchedulerBenchOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* sub = bench.add_subcommand(
      "scheduler", "placement decisions per second of the pool scheduler at several pool sizes");
  sub->add_option("--nodes", options->nodes, "pool sizes in nodes, e.g. 100,1000,10000")->delimiter(',');
  sub->add_option("--repeats", options->repeats, "least runs per row (median reported)");
  sub->add_option("--min-ms", options->min_ms, "run a row again until its churn phases add up to this");
  sub->add_option("--rounds", options->rounds, "churn rounds per run");
  sub->add_option("--seed", options->seed, "workload seed");
  sub->add_flag("--json", *json, "one JSON object per line instead of a table");
  table.entries.emplace_back(sub, [options, json] {
    std::vector<Row> rows = run_bench(*options);
    if (*json) {
      print_json(rows);
    } else {
      print_table(rows, *options);
    }
    return 0;
  });
}

}  // namespace petaring::cli
