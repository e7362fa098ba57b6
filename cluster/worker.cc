#include "cluster/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "cluster/auth.h"
#include "cluster/connection.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "trainer/train.h"

namespace petaring::cluster {

using Clock = std::chrono::steady_clock;
using RankKey = std::tuple<int64_t, uint32_t, uint32_t>;  // job, attempt, rank

std::string to_hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return hex;
}

std::string from_hex(const std::string& hex) {
  auto value = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    PR_FAIL(kInvalidArgument, "not a hex digit: '", c, "'");
  };
  if (hex.size() % 2) PR_FAIL(kInvalidArgument, "hex text of odd length ", hex.size());
  std::string bytes;
  for (size_t i = 0; i < hex.size(); i += 2) bytes.push_back(static_cast<char>(value(hex[i]) * 16 + value(hex[i + 1])));
  return bytes;
}

void join_job(const std::string& coordinator, int64_t job_id, uint32_t attempt, const std::string& token) {
  ConnectOptions options;
  options.address = coordinator;
  options.role = wire::Role::RANK;
  options.name = rank_name(job_id, attempt);
  options.key = token;
  Connection connection(options);
  capnp::MallocMessageBuilder message;
  auto join = message.initRoot<wire::Envelope>().initJoinJob();
  join.setJobId(job_id);
  join.setAttempt(attempt);
  connection.call(message);
}

namespace {

struct RankProcess {
  pid_t pid = 0;
  Clock::time_point kill_at = Clock::time_point::max();  // SIGKILL past this (after SIGTERM)
  std::string metrics_path;  // rank 0 only
};

std::string last_line(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - 8192);
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  size_t nl = tail.rfind('\n');
  return nl == std::string::npos ? (start == 0 ? tail : "") : tail.substr(nl + 1);
}

// A rough measured speed of one virtual GPU (one core): a 96^3 float matmul, best of 3.
// The scheduler's ledger multiplies it by the seconds each device was held.
double measure_cpu_flops() {
  constexpr int n = 96;
  std::vector<float> a(n * n, 1.0f), b(n * n, 0.5f), c(n * n);
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    auto start = std::chrono::steady_clock::now();
    std::fill(c.begin(), c.end(), 0.0f);
    for (int i = 0; i < n; ++i) {
      for (int k = 0; k < n; ++k) {
        float aik = a[i * n + k];
        for (int j = 0; j < n; ++j) c[i * n + j] += aik * b[k * n + j];
      }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    volatile float sink = c[n + 1];
    (void)sink;
    if (seconds > 0) best = std::max(best, 2.0 * n * n * n / seconds);
  }
  return best;
}

bool has_checkpoint(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".ckpt") return true;
  }
  return false;
}

}  // namespace

struct Worker::Impl {
  WorkerOptions options;
  std::mutex mu;
  std::condition_variable wake;
  bool stop_requested = false;
  std::string kind;
  int device_count = 0;
  int64_t node_id = 0;
  double flops_per_device = 0;  // measured once, sent with every registration
  std::unique_ptr<Connection> connection;
  std::map<RankKey, RankProcess> ranks;
  std::set<RankKey> known;                    // every rank ever started here
  std::vector<std::tuple<RankKey, int>> exits;  // not yet acknowledged
  std::vector<std::tuple<int64_t, uint32_t, std::string>> final_metrics;  // of exited rank 0s

  void parse_devices() {
    size_t colon = options.devices.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument("no colon");
      kind = options.devices.substr(0, colon);
      device_count = std::stoi(options.devices.substr(colon + 1));
    } catch (const std::exception&) {
      device_count = 0;
    }
    if (kind != "cpu" || device_count < 1 || device_count > 1024) {
      PR_FAIL(kInvalidArgument, "--devices '", options.devices,
              "' is not cpu:N with N in 1-1024 (virtual GPUs); e.g. --devices cpu:4");
    }
  }

  // Connects and registers, retrying for reconnect_timeout: a coordinator that is
  // restarting may accept and then reset the connection, or drop it before the
  // registration is answered. A refused handshake (kPermissionDenied: a wrong secret)
  // is final on the first registration; on a reconnect the same secret was accepted
  // before, so a handshake cut short is taken for a restart and retried too.
  void connect() {
    const bool reconnecting = node_id != 0;
    auto deadline = Clock::now() + options.reconnect_timeout;
    for (auto pause = std::chrono::milliseconds(50);;
         pause = std::min(pause * 2, std::chrono::milliseconds(1000))) {
      try {
        connect_once(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        return;
      } catch (const Error& e) {
        bool transient = e.kind() == ErrorKind::kDisconnected || e.kind() == ErrorKind::kTimeout ||
                         (reconnecting && e.kind() == ErrorKind::kPermissionDenied);
        if (!transient) throw;
        if (Clock::now() + pause >= deadline) {
          PR_FAIL(kTimeout, "worker ", options.name, ": the coordinator at ", options.coordinator,
                  " stayed unreachable for ", options.reconnect_timeout.count(), " ms (last: ", e.what(),
                  "); is `petaring coordinator` running there?");
        }
        PR_LOG(kWarn) << "worker " << options.name << ": " << e.what() << "; trying again";
        std::this_thread::sleep_for(pause);
      }
    }
  }

  void connect_once(std::chrono::milliseconds connect_timeout) {
    connection.reset();
    ConnectOptions c;
    c.address = options.coordinator;
    c.role = wire::Role::WORKER;
    c.name = options.name;
    c.key = options.secret;
    c.connect_timeout = std::max(connect_timeout, std::chrono::milliseconds(1));
    connection = std::make_unique<Connection>(c);
    capnp::MallocMessageBuilder message;
    auto reg = message.initRoot<wire::Envelope>().initRegisterNode();
    reg.setName(options.name);
    if (flops_per_device == 0) flops_per_device = measure_cpu_flops();
    auto devices = reg.initDevices(static_cast<unsigned>(device_count));
    for (int i = 0; i < device_count; ++i) {
      devices[i].setIndex(static_cast<uint32_t>(i));
      devices[i].setKind(kind);
      devices[i].setMemoryBytes(2ull << 30);
      devices[i].setFlopsPerS(flops_per_device);
    }
    node_id = connection->call(message)->envelope().getRegistered().getNodeId();
    PR_LOG(kInfo) << "worker " << options.name << ": registered " << device_count << " " << kind
                  << " devices with " << options.coordinator << " as node " << node_id;
  }

  void reap() {
    for (auto it = ranks.begin(); it != ranks.end();) {
      int status = 0;
      pid_t done = ::waitpid(it->second.pid, &status, WNOHANG);
      if (done == it->second.pid) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        PR_LOG(kInfo) << "worker " << options.name << ": job " << std::get<0>(it->first) << " rank "
                      << std::get<2>(it->first) << " exited with code " << code
                      << (code == kPreemptedExitCode ? " (preempted after a checkpoint)" : "");
        exits.emplace_back(it->first, code);
        if (!it->second.metrics_path.empty()) {
          std::string line = last_line(it->second.metrics_path);
          if (!line.empty()) final_metrics.emplace_back(std::get<0>(it->first), std::get<1>(it->first), line);
        }
        it = ranks.erase(it);
        continue;
      }
      if (Clock::now() >= it->second.kill_at) ::kill(-it->second.pid, SIGKILL);
      ++it;
    }
  }

  void stop_rank(const RankKey& key) {
    auto it = ranks.find(key);
    if (it == ranks.end() || it->second.kill_at != Clock::time_point::max()) return;
    ::kill(-it->second.pid, SIGTERM);
    it->second.kill_at = Clock::now() + options.stop_grace;
  }

  void start(wire::Assignment::Reader a) {
    int64_t job = a.getJobId();
    uint32_t attempt = a.getAttempt();
    std::filesystem::path dir = std::filesystem::absolute(options.workdir) / ("job-" + std::to_string(job));
    std::filesystem::create_directories(dir);
    std::string recipe = (dir / "recipe.yaml").string();
    { std::ofstream(recipe, std::ios::binary | std::ios::trunc) << std::string(a.getRecipeYaml()); }
    auto list = a.getRanks();
    for (unsigned local = 0; local < list.size(); ++local) {
      RankKey key{job, attempt, list[local]};
      if (known.count(key)) continue;
      known.insert(key);
      RankProcess process;
      if (list[local] == 0) process.metrics_path = (dir / str_cat("metrics.attempt-", attempt, ".jsonl")).string();
      std::vector<std::string> args = {options.petaring, "pool-rank", "--", options.petaring, "train", recipe,
                                       "--set", str_cat("devices.count=", list.size())};
      if (!process.metrics_path.empty()) {
        args.push_back("--metrics");
        args.push_back(process.metrics_path);
      }
      // Checkpoints go to the folder the coordinator names (shared by every worker), else
      // to the job's own folder here; a later attempt resumes from the newest.
      std::string checkpoints =
          a.getCheckpointDir().size() > 0 ? std::string(a.getCheckpointDir()) : (dir / "checkpoints").string();
      args.push_back("--set");
      args.push_back("checkpoint.dir=" + checkpoints);
      if (a.getResume() && has_checkpoint(checkpoints)) args.push_back("--resume");
      std::map<std::string, std::string> env = {
          {"PETARING_COORDINATOR", options.coordinator},
          {"PETARING_JOB_ID", std::to_string(job)},
          {"PETARING_JOB_ATTEMPT", std::to_string(attempt)},
          {"PETARING_JOB_TOKEN", to_hex(std::string(reinterpret_cast<const char*>(a.getToken().begin()), a.getToken().size()))},
          {"PETARING_RANK", std::to_string(list[local])},
          {"PETARING_WORLD_SIZE", std::to_string(a.getWorldSize())},
          {"PETARING_LOCAL_RANK", std::to_string(local)},
          {"PETARING_LOCAL_WORLD_SIZE", std::to_string(list.size())},
          {"PETARING_TRANSPORT", "tcp"}};
      std::string log = (dir / str_cat("rank-", list[local], ".attempt-", attempt, ".log")).string();
      process.pid = spawn(args, env, dir.string(), log);
      PR_LOG(kInfo) << "worker " << options.name << ": started job " << job << " attempt " << attempt << " rank "
                    << list[local] << " of " << a.getWorldSize() << " (pid " << process.pid << ")";
      ranks[key] = process;
    }
  }

  static pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                     const std::string& dir, const std::string& log) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) PR_FAIL(kFailedPrecondition, "fork failed starting a rank: ", std::strerror(errno));
    if (pid == 0) {
      // The worker blocks SIGTERM and SIGINT (it waits for them on a thread); a rank must
      // get them, to checkpoint and exit 75 when stopped.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      if (::chdir(dir.c_str()) != 0) ::_exit(127);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    return pid;
  }

  // One heartbeat; returns true when the node was reclaimed.
  bool heartbeat() {
    capnp::MallocMessageBuilder message;
    auto beat = message.initRoot<wire::Envelope>().initHeartbeat();
    beat.setNodeId(node_id);
    auto running = beat.initRunning(static_cast<unsigned>(ranks.size()));
    unsigned i = 0;
    std::vector<std::tuple<int64_t, uint32_t, std::string>> metrics = final_metrics;
    for (const auto& [key, process] : ranks) {
      running[i].setJobId(std::get<0>(key));
      running[i].setAttempt(std::get<1>(key));
      running[i++].setRank(std::get<2>(key));
      if (!process.metrics_path.empty()) {
        std::string line = last_line(process.metrics_path);
        if (!line.empty()) metrics.emplace_back(std::get<0>(key), std::get<1>(key), line);
      }
    }
    size_t sent_exits = exits.size();
    auto out = beat.initExits(static_cast<unsigned>(sent_exits));
    for (size_t e = 0; e < sent_exits; ++e) {
      const auto& [key, code] = exits[e];
      out[e].setJobId(std::get<0>(key));
      out[e].setAttempt(std::get<1>(key));
      out[e].setRank(std::get<2>(key));
      out[e].setExitCode(code);
    }
    auto m = beat.initMetrics(static_cast<unsigned>(metrics.size()));
    for (size_t k = 0; k < metrics.size(); ++k) {
      m[k].setJobId(std::get<0>(metrics[k]));
      m[k].setAttempt(std::get<1>(metrics[k]));
      m[k].setLine(std::get<2>(metrics[k]));
    }
    auto reply_frame = connection->call(message);
    exits.erase(exits.begin(), exits.begin() + static_cast<std::ptrdiff_t>(sent_exits));
    final_metrics.clear();
    auto reply = reply_frame->envelope().getHeartbeatReply();
    for (auto stop : reply.getStop()) stop_rank({stop.getJobId(), stop.getAttempt(), stop.getRank()});
    for (auto a : reply.getStart()) start(a);
    return reply.getReclaimed();
  }

  void stop_all() {
    for (const auto& [key, process] : ranks) stop_rank(key);
  }
};

Worker::Worker(WorkerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  if (impl_->options.name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    impl_->options.name = host;
  }
  impl_->parse_devices();
}

Worker::~Worker() {
  impl_->stop_all();
  for (const auto& [key, process] : impl_->ranks) {
    ::kill(-process.pid, SIGKILL);
    ::waitpid(process.pid, nullptr, 0);
  }
}

void Worker::request_stop() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->stop_requested = true;
  impl_->wake.notify_all();
}

void Worker::run() {
  Impl& w = *impl_;
  w.connect();
  bool leaving = false;  // reclaimed or stopped: ranks are being stopped
  for (;;) {
    w.reap();
    if (leaving && w.ranks.empty()) {
      try {
        w.heartbeat();  // reports the last exits
      } catch (const Error&) {
      }
      PR_LOG(kInfo) << "worker " << w.options.name << ": every rank stopped; leaving the pool";
      return;
    }
    try {
      if (w.heartbeat() && !leaving) {
        PR_LOG(kInfo) << "worker " << w.options.name << ": reclaimed by its owner; stopping its ranks";
        leaving = true;
        w.stop_all();
      }
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kDisconnected && e.kind() != ErrorKind::kTimeout) throw;
      PR_LOG(kWarn) << "worker " << w.options.name << ": " << e.what() << "; reconnecting";
      w.connect();
      continue;
    }
    std::unique_lock<std::mutex> lock(w.mu);
    w.wake.wait_for(lock, leaving ? std::chrono::milliseconds(50) : w.options.heartbeat_interval,
                    [&] { return w.stop_requested && !leaving; });
    if (w.stop_requested && !leaving) {
      leaving = true;
      w.stop_all();
    }
  }
}

}  // namespace petaring::cluster
