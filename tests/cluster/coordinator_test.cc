// The coordinator in-process, on loopback, with fake workers speaking the real protocol:
// placement and reasons, exits and the ledger, lost nodes, reclaim, cancel, and a restart
// on the same state file.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cluster/auth.h"
#include "cluster/client.h"
#include "cluster/connection.h"
#include "cluster/coordinator.h"
#include "cluster/rank_store.h"
#include "cluster/state.h"
#include "cluster/worker.h"
#include "runtime/error.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

namespace petaring::cluster {
namespace {

const std::string kSecret = "pool secret for the coordinator tests";

std::string recipe_text() {
  std::ifstream in(std::string(PETARING_SOURCE_DIR) + "/examples/recipes/fashion_mlp_small.yaml");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Beat {
  struct Start {
    int64_t job;
    uint32_t attempt;
    std::vector<uint32_t> ranks;
    bool resume;
    uint32_t world_size = 0;
    std::string checkpoint_dir;
  };
  std::vector<Start> starts;
  std::vector<std::tuple<int64_t, uint32_t, uint32_t>> stops;
  bool reclaimed = false;
};

// A worker without processes: registers, then heartbeats what the test says runs.
class FakeWorker {
 public:
  FakeWorker(const std::string& address, const std::string& name, int devices) {
    ConnectOptions options;
    options.address = address;
    options.role = wire::Role::WORKER;
    options.name = name;
    options.key = kSecret;
    connection_ = std::make_unique<Connection>(options);
    capnp::MallocMessageBuilder message;
    auto reg = message.initRoot<wire::Envelope>().initRegisterNode();
    reg.setName(name);
    auto list = reg.initDevices(static_cast<unsigned>(devices));
    for (int i = 0; i < devices; ++i) {
      list[i].setIndex(static_cast<uint32_t>(i));
      list[i].setKind("cpu");
      list[i].setFlopsPerS(1e9);
    }
    id_ = connection_->call(message)->envelope().getRegistered().getNodeId();
  }

  Beat beat(const std::vector<std::tuple<int64_t, uint32_t, uint32_t>>& running = {},
            const std::vector<std::tuple<int64_t, uint32_t, uint32_t, int32_t>>& exits = {}) {
    capnp::MallocMessageBuilder message;
    auto beat = message.initRoot<wire::Envelope>().initHeartbeat();
    beat.setNodeId(id_);
    auto r = beat.initRunning(static_cast<unsigned>(running.size()));
    for (size_t i = 0; i < running.size(); ++i) {
      r[i].setJobId(std::get<0>(running[i]));
      r[i].setAttempt(std::get<1>(running[i]));
      r[i].setRank(std::get<2>(running[i]));
    }
    auto e = beat.initExits(static_cast<unsigned>(exits.size()));
    for (size_t i = 0; i < exits.size(); ++i) {
      e[i].setJobId(std::get<0>(exits[i]));
      e[i].setAttempt(std::get<1>(exits[i]));
      e[i].setRank(std::get<2>(exits[i]));
      e[i].setExitCode(std::get<3>(exits[i]));
    }
    auto reply = connection_->call(message);
    auto hb = reply->envelope().getHeartbeatReply();
    Beat out;
    for (auto s : hb.getStart()) {
      Beat::Start start{s.getJobId(), s.getAttempt(), {}, s.getResume(), s.getWorldSize(), s.getCheckpointDir()};
      for (uint32_t rank : s.getRanks()) start.ranks.push_back(rank);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(s.getToken().begin()), s.getToken().size()),
                job_token(kSecret, s.getJobId(), s.getAttempt()));
      out.starts.push_back(start);
    }
    for (auto s : hb.getStop()) out.stops.emplace_back(s.getJobId(), s.getAttempt(), s.getRank());
    out.reclaimed = hb.getReclaimed();
    return out;
  }

 private:
  std::unique_ptr<Connection> connection_;
  int64_t id_ = 0;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("coordinator-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    start();
  }
  ~CoordinatorTest() override {
    coordinator_.reset();
    std::filesystem::remove_all(dir_);
  }

  void restart_with_shared_dir(const std::string& shared_dir) {
    coordinator_.reset();
    start(shared_dir);
  }

  // Fake workers beat only when a test says so; so that a loaded host declares no node
  // dead, only the tests of lost nodes run with a short heartbeat timeout.
  void restart_with_short_heartbeat_timeout() {
    coordinator_.reset();
    start("", std::chrono::milliseconds(300));
  }

  void start(const std::string& shared_dir = "",
             std::chrono::milliseconds heartbeat_timeout = std::chrono::minutes(5)) {
    CoordinatorOptions options;
    options.shared_dir = shared_dir;
    options.listen = "127.0.0.1:0";
    options.state_path = (dir_ / "state.db").string();
    options.secret = kSecret;
    options.heartbeat_timeout = heartbeat_timeout;
    options.max_attempts = 3;
    coordinator_ = std::make_unique<Coordinator>(options);
  }

  PoolClient client() { return PoolClient({coordinator_->address(), kSecret}); }

  nlohmann::json wait_for_job(int64_t id, const std::string& state) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      nlohmann::json job = client().job(id);
      if (job["state"] == state || std::chrono::steady_clock::now() > deadline) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::filesystem::path dir_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(CoordinatorTest, BadRecipeIsRejectedAtSubmit) {
  std::string bad = recipe_text();
  bad.replace(bad.find("momentum: 0.9"), 13, "momentum: 1.5");
  std::string train_error;  // what `petaring train` says about the same text
  try {
    parse_recipe(bad, "bad.yaml");
  } catch (const Error& e) {
    train_error = e.what();
  }
  ASSERT_NE(train_error.find("optimizer.momentum"), std::string::npos) << train_error;
  try {
    client().submit_text(bad, "bad.yaml", 1, 0, "t");
    ADD_FAILURE() << "a bad recipe was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_EQ(std::string(e.what()), train_error);
  }
  EXPECT_TRUE(client().jobs().empty());
}

TEST_F(CoordinatorTest, GangPlacementExitsAndLedger) {
  FakeWorker a(coordinator_->address(), "a", 2), b(coordinator_->address(), "b", 2);
  int64_t big = client().submit_text(recipe_text(), "r.yaml", 9, 0, "t");
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 3, 0, "alice");
  EXPECT_EQ(client().job(big)["reason"],
            "needs 9 GPUs; the pool has 4 such GPUs lent; it starts when enough GPUs join the pool");
  EXPECT_EQ(client().job(job)["state"], "running");
  // All or nothing, on as few nodes as possible, a node's ranks consecutive (scheduler/).
  EXPECT_EQ(client().job(job)["placement"], "a:0,b:0,b:1");
  Beat beat_a = a.beat(), beat_b = b.beat();
  ASSERT_EQ(beat_a.starts.size(), 1u);
  EXPECT_EQ(beat_a.starts[0].ranks, (std::vector<uint32_t>{0}));
  EXPECT_FALSE(beat_a.starts[0].resume);
  ASSERT_EQ(beat_b.starts.size(), 1u);
  EXPECT_EQ(beat_b.starts[0].ranks, (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(b.beat({{job, 1, 1}, {job, 1, 2}}).starts.empty());  // not sent twice
  a.beat({}, {{job, 1, 0, 0}});
  b.beat({}, {{job, 1, 1, 0}, {job, 1, 2, 0}});
  EXPECT_EQ(client().job(job)["state"], "finished");
  nlohmann::json ledger = client().ledger();
  ASSERT_EQ(ledger.size(), 2u);  // one row per node
  EXPECT_EQ(ledger[0]["tenant"], "alice");
  // The scheduler's ledger: node b held two of the three GPUs, so twice a's share.
  EXPECT_DOUBLE_EQ(ledger[1]["gpu_seconds"].get<double>(), 2 * ledger[0]["gpu_seconds"].get<double>());
  EXPECT_DOUBLE_EQ(ledger[1]["flops"].get<double>(), 2 * ledger[0]["flops"].get<double>());
  EXPECT_EQ(client().job(big)["state"], "queued");
}

TEST_F(CoordinatorTest, FailedRankRestartsTheJobThenGivesUp) {
  FakeWorker a(coordinator_->address(), "a", 2);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
  Beat beat = a.beat();
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_EQ(beat.starts.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(beat.starts[0].attempt, attempt);
    EXPECT_EQ(beat.starts[0].resume, attempt > 1);
    // Rank 1 fails: rank 0 is told to stop; the GPUs stay held until it has exited,
    // and the next attempt comes in the reply to the heartbeat that reports it.
    beat = a.beat({{job, attempt, 0}}, {{job, attempt, 1, 1}});
    ASSERT_EQ(beat.stops.size(), 1u);
    EXPECT_EQ(beat.stops[0], std::make_tuple(job, attempt, 0u));
    EXPECT_TRUE(beat.starts.empty());
    EXPECT_EQ(client().job(job)["state"], "stopping");
    beat = a.beat({}, {{job, attempt, 0, 143}});
  }
  EXPECT_TRUE(beat.starts.empty());
  nlohmann::json state = client().job(job);
  EXPECT_EQ(state["state"], "failed");
  EXPECT_NE(state["reason"].get<std::string>().find("rank 1 on node a exited with code 1"), std::string::npos);
  EXPECT_NE(state["reason"].get<std::string>().find("gave up after 3 failed attempts"), std::string::npos);
}

TEST_F(CoordinatorTest, LostNodeRestartsItsJobsElsewhere) {
  restart_with_short_heartbeat_timeout();
  FakeWorker a(coordinator_->address(), "a", 2), b(coordinator_->address(), "b", 2);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
  EXPECT_EQ(client().job(job)["placement"], "a:0,a:1");
  a.beat();
  // b keeps beating, a falls silent: within the timeout the job moves to b.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Beat beat;
  while (beat.starts.empty() && std::chrono::steady_clock::now() < deadline) {
    beat = b.beat();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].attempt, 2u);
  EXPECT_TRUE(beat.starts[0].resume);
  EXPECT_EQ(client().job(job)["placement"], "b:0,b:1");
  EXPECT_EQ(client().nodes()[0]["state"], "dead");
  // a comes back still running a rank of the old attempt: told to stop it.
  Beat late = a.beat({{job, 1, 0}});
  ASSERT_EQ(late.stops.size(), 1u);
  EXPECT_EQ(late.stops[0], std::make_tuple(job, 1u, 0u));
}

TEST_F(CoordinatorTest, RestartWaitsForTheOldRanksOrTheirNodesDeath) {
  restart_with_short_heartbeat_timeout();
  FakeWorker a(coordinator_->address(), "a", 2), b(coordinator_->address(), "b", 2),
      c(coordinator_->address(), "c", 2);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 3, 0, "t");
  EXPECT_EQ(client().job(job)["placement"], "a:0,c:0,c:1");
  // c's rank fails (its peer on a is gone, say): c's other rank exits, but the rank on a
  // is not reported, so the attempt keeps its GPUs...
  c.beat({{job, 1, 1}}, {{job, 1, 2, 1}});
  c.beat({}, {{job, 1, 1, 143}});
  EXPECT_EQ(client().job(job)["state"], "stopping");
  EXPECT_EQ(client().job(job)["attempt"], 1);
  // ...until a is declared dead; then the job restarts on the nodes still beating.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (client().job(job)["state"] != "running" && std::chrono::steady_clock::now() < deadline) {
    b.beat();
    c.beat();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(client().job(job)["attempt"], 2);
  std::string placement = client().job(job)["placement"];
  EXPECT_EQ(placement.find("a:"), std::string::npos) << placement;
  EXPECT_EQ(std::count(placement.begin(), placement.end(), ','), 2) << placement;
}

TEST_F(CoordinatorTest, ElasticJobTakesWhatIsFreeAndShrinksAfterAReclaim) {
  FakeWorker a(coordinator_->address(), "a", 2), b(coordinator_->address(), "b", 1);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 1, 0, "t", /*max_gpus=*/4);
  nlohmann::json info = client().job(job);
  EXPECT_EQ(info["min_gpus"], 1);
  EXPECT_EQ(info["max_gpus"], 4);
  EXPECT_EQ(info["gpus"], 3);  // every free GPU, up to 4
  Beat beat = a.beat();
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].world_size, 3u);
  client().reclaim("a");
  EXPECT_EQ(client().job(job)["state"], "stopping");
  a.beat({}, {{job, 1, 0, 75}, {job, 1, 1, 75}});
  beat = b.beat({}, {{job, 1, 2, 75}});  // the last exit: re-placed in this reply
  info = client().job(job);
  EXPECT_EQ(info["attempt"], 2);
  EXPECT_EQ(info["gpus"], 1);  // re-placed on what is left
  EXPECT_EQ(info["placement"], "b:0");
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].world_size, 1u);
  EXPECT_TRUE(beat.starts[0].resume);
  EXPECT_THROW(client().submit_text(recipe_text(), "r.yaml", 3, 0, "t", 2), Error);  // max < min
}

TEST_F(CoordinatorTest, RestartStopsAJobLeftOnANodeThatDied) {
  // A crash between "node dead" and "attempt ended" leaves this in the state file.
  coordinator_.reset();
  {
    PoolState state((dir_ / "state.db").string());
    int64_t a = state.upsert_node("a", {{0, "cpu", 0, 1e9}, {1, "cpu", 0, 1e9}});
    state.set_node_state(a, "dead");
    JobRow job;
    job.name = "r.yaml";
    job.recipe_yaml = recipe_text();
    job.gpus = job.min_gpus = job.max_gpus = 2;
    job.tenant = "t";
    job.id = state.add_job(job);
    job.state = "running";
    job.attempt = 1;
    job.started_ms = now_ms();
    state.start_attempt(job, {{job.id, 1, 0, a, 0, "running", 0}, {job.id, 1, 1, a, 1, "running", 0}});
  }
  start();
  nlohmann::json job = client().job(1);
  EXPECT_EQ(job["state"], "queued");
  EXPECT_EQ(job["placement"], "");
  ASSERT_EQ(client().ledger().size(), 1u);  // the attempt's usage is accounted for
  EXPECT_EQ(client().ledger()[0]["node"], "a");
  FakeWorker b(coordinator_->address(), "b", 2);
  EXPECT_EQ(client().job(1)["placement"], "b:0,b:1");
  EXPECT_EQ(client().job(1)["attempt"], 2);
}

TEST_F(CoordinatorTest, ReclaimAndCancel) {
  FakeWorker a(coordinator_->address(), "a", 2), b(coordinator_->address(), "b", 1);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
  a.beat();
  client().reclaim("a");
  Beat beat = a.beat({{job, 1, 0}, {job, 1, 1}});
  EXPECT_TRUE(beat.reclaimed);
  EXPECT_EQ(beat.stops.size(), 2u);
  EXPECT_EQ(client().job(job)["state"], "stopping");
  a.beat({}, {{job, 1, 0, 75}, {job, 1, 1, 75}});
  EXPECT_EQ(client().job(job)["reason"],  // a is gone
            "needs 2 GPUs; the pool has 1 such GPU lent and 2 reclaimed by their owners; it starts when "
            "enough GPUs join the pool");
  client().cancel(job);
  EXPECT_EQ(client().job(job)["state"], "cancelled");
  EXPECT_THROW(client().cancel(job), Error);
  EXPECT_THROW(client().reclaim("nobody"), Error);
}

TEST_F(CoordinatorTest, RestartKeepsJobsLedgerAndRunningAttempts) {
  int64_t done = 0, running = 0;
  {
    FakeWorker a(coordinator_->address(), "a", 2);
    done = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
    a.beat();
    a.beat({}, {{done, 1, 0, 0}, {done, 1, 1, 0}});
    running = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
    a.beat();
  }
  nlohmann::json jobs = client().jobs(), ledger = client().ledger();
  coordinator_.reset();
  start();
  nlohmann::json jobs_after = client().jobs();
  for (auto& j : jobs_after) j["last_metrics"] = nullptr;
  for (auto& j : jobs) j["last_metrics"] = nullptr;
  EXPECT_EQ(jobs_after, jobs);
  EXPECT_EQ(client().ledger(), ledger);
  // The worker re-registers and reports the running attempt: it is kept, not restarted.
  FakeWorker a(coordinator_->address(), "a", 2);
  Beat beat = a.beat({{running, 1, 0}, {running, 1, 1}});
  EXPECT_TRUE(beat.stops.empty());
  EXPECT_TRUE(beat.starts.empty());
  a.beat({}, {{running, 1, 0, 0}, {running, 1, 1, 0}});
  EXPECT_EQ(client().job(running)["state"], "finished");
}

// The ranks of a job meet through the coordinator (rank_store.h), each proving its
// attempt's token: a rank sees its own attempt's table only, a wrong token or another
// job's token is refused with a clear error, and an ended attempt's ranks are refused.
TEST_F(CoordinatorTest, RanksMeetThroughTheCoordinatorInTheirOwnJobOnly) {
  FakeWorker a(coordinator_->address(), "a", 2);
  int64_t one = client().submit_text(recipe_text(), "r.yaml", 1, 0, "t");
  int64_t two = client().submit_text(recipe_text(), "r.yaml", 1, 0, "t");
  a.beat();
  ASSERT_EQ(client().job(one)["state"], "running");
  ASSERT_EQ(client().job(two)["state"], "running");
  std::string address = coordinator_->address();
  RankStore rank0(address, one, 1, job_token(kSecret, one, 1));
  RankStore rank1(address, one, 1, job_token(kSecret, one, 1));
  rank0.set("host/0", "a");
  EXPECT_EQ(rank1.get("host/0", std::chrono::seconds(5)), "a");
  EXPECT_EQ(rank0.add("count", 2), 2);
  EXPECT_EQ(rank1.add("count", 3), 5);
  EXPECT_EQ(rank1.local_ip(), "127.0.0.1");
  // A get waits (polling) until another rank sets the key.
  std::thread late([&] { RankStore(address, one, 1, job_token(kSecret, one, 1)).set("late", "here"); });
  EXPECT_EQ(rank0.get("late", std::chrono::seconds(5)), "here");
  late.join();

  // Job two's ranks have a table of their own: job one's keys are not in it.
  RankStore other(address, two, 1, job_token(kSecret, two, 1));
  try {
    other.get("host/0", std::chrono::milliseconds(30));
    FAIL() << "a rank of job two read job one's key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kTimeout);
  }
  // A wrong token, another job's token, another attempt's token: refused at the handshake.
  for (const std::string& token : {std::string(32, 'x'), job_token(kSecret, two, 1), job_token(kSecret, one, 2),
                                   kSecret}) {
    try {
      RankStore impostor(address, one, 1, token);
      FAIL() << "a rank with a wrong token joined job one";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kPermissionDenied);
      EXPECT_NE(std::string(e.what()).find("its job token is wrong"), std::string::npos) << e.what();
    }
  }
  // A rank's request names no job: it can only ever reach the one it proved. Joining
  // another job by id is refused too.
  ConnectOptions options{address, wire::Role::RANK, rank_name(one, 1), job_token(kSecret, one, 1)};
  Connection connection(options);
  capnp::MallocMessageBuilder join;
  join.initRoot<wire::Envelope>().initJoinJob().setJobId(two);
  EXPECT_THROW(connection.call(join), Error);

  // Job one ends: its table goes, and its ranks (or a late one) are told so.
  a.beat({{two, 1, 0}}, {{one, 1, 0, 0}});
  ASSERT_EQ(client().job(one)["state"], "finished");
  try {
    rank1.set("host/1", "a");
    FAIL() << "a rank of a finished job wrote to the rendezvous";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find("job 1 attempt 1 is not running"), std::string::npos) << e.what();
  }
  EXPECT_THROW(join_job(address, one, 1, job_token(kSecret, one, 1)), Error);
  EXPECT_NO_THROW(join_job(address, two, 1, job_token(kSecret, two, 1)));
  EXPECT_EQ(other.add("count", 1), 1);  // job two's rendezvous is untouched
}

// On a stop the GPUs stay with the stopping attempt until its worker reports its ranks
// exited: a waiting job does not get them earlier, not even across a coordinator
// restart (the stopping state is in the state file, and the stops are sent again).
TEST_F(CoordinatorTest, StoppingHoldsTheGpusUntilTheOldRanksExitAcrossARestart) {
  int64_t first = 0, second = 0;
  {
    FakeWorker a(coordinator_->address(), "a", 2);
    first = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
    second = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
    a.beat();
    EXPECT_EQ(client().job(second)["state"], "queued");
    client().cancel(first);
    EXPECT_EQ(client().job(first)["state"], "stopping");
    EXPECT_EQ(client().job(first)["placement"], "a:0,a:1");
    Beat beat = a.beat({{first, 1, 0}, {first, 1, 1}});
    EXPECT_EQ(beat.stops.size(), 2u);
    EXPECT_TRUE(beat.starts.empty());  // the GPUs are still held
    EXPECT_EQ(client().job(second)["state"], "queued");
    EXPECT_EQ(client().nodes()[0]["busy"], 2);
  }
  coordinator_.reset();
  start();
  EXPECT_EQ(client().job(first)["state"], "stopping");
  EXPECT_EQ(client().job(second)["state"], "queued");
  EXPECT_THROW(client().cancel(first), Error);  // already being cancelled
  FakeWorker a(coordinator_->address(), "a", 2);
  // Rank 1 is still shutting down: stopped again, nothing new starts.
  Beat beat = a.beat({{first, 1, 1}}, {{first, 1, 0, 75}});
  ASSERT_EQ(beat.stops.size(), 1u);
  EXPECT_EQ(beat.stops[0], std::make_tuple(first, 1u, 1u));
  EXPECT_TRUE(beat.starts.empty());
  EXPECT_EQ(client().job(second)["state"], "queued");
  // Its exit frees the GPUs: the waiting job starts in the same reply.
  beat = a.beat({}, {{first, 1, 1, 143}});
  EXPECT_EQ(client().job(first)["state"], "cancelled");
  EXPECT_EQ(client().job(first)["placement"], "");
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].job, second);
  EXPECT_EQ(client().ledger().size(), 1u);  // the stopped attempt's usage, once
}

// A rank that exits 75 (the trainer preempted by a signal, after its checkpoint) is a
// preemption, not a failure: the job is re-placed to resume, however often it happens,
// while max_attempts (3 here) failed attempts still end it.
TEST_F(CoordinatorTest, PreemptedRanksAreReplacedWithoutCountingAFailure) {
  FakeWorker a(coordinator_->address(), "a", 2);
  int64_t job = client().submit_text(recipe_text(), "r.yaml", 2, 0, "t");
  Beat beat = a.beat();
  for (uint32_t attempt = 1; attempt <= 5; ++attempt) {
    ASSERT_EQ(beat.starts.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(beat.starts[0].attempt, attempt);
    EXPECT_EQ(beat.starts[0].resume, attempt > 1);
    beat = a.beat({{job, attempt, 1}}, {{job, attempt, 0, kPreemptedExitCode}});
    EXPECT_EQ(client().job(job)["state"], "stopping");
    EXPECT_NE(client().job(job)["reason"].get<std::string>().find("was preempted (exit 75) after a checkpoint"),
              std::string::npos)
        << client().job(job)["reason"];
    beat = a.beat({}, {{job, attempt, 1, kPreemptedExitCode}});
  }
  EXPECT_EQ(client().job(job)["state"], "running");
  EXPECT_EQ(client().job(job)["attempt"], 6);
  // Real failures still count: the third ends the job.
  for (uint32_t attempt = 6; attempt <= 8; ++attempt) {
    ASSERT_EQ(beat.starts.size(), 1u) << "attempt " << attempt;
    beat = a.beat({}, {{job, attempt, 0, 1}, {job, attempt, 1, 1}});
  }
  EXPECT_TRUE(beat.starts.empty());
  EXPECT_EQ(client().job(job)["state"], "failed");
  EXPECT_NE(client().job(job)["reason"].get<std::string>().find("gave up after 3 failed attempts"),
            std::string::npos);
}

// Every attempt is handed its job's checkpoint folder: the recipe's absolute
// checkpoint.dir, else one under --shared-dir, else none (the worker's own folder).
TEST_F(CoordinatorTest, AttemptsAreHandedTheJobsSharedCheckpointFolder) {
  EXPECT_THROW(restart_with_shared_dir("relative/dir"), Error);
  restart_with_shared_dir("/mnt/pool");
  FakeWorker a(coordinator_->address(), "a", 2);
  int64_t plain = client().submit_text(recipe_text(), "r.yaml", 1, 0, "t");
  int64_t own = client().submit_text(recipe_text() + "checkpoint:\n  dir: /data/mine\n", "r.yaml", 1, 0, "t");
  Beat beat = a.beat();
  ASSERT_EQ(beat.starts.size(), 2u);
  EXPECT_EQ(beat.starts[0].job, plain);
  EXPECT_EQ(beat.starts[0].checkpoint_dir, str_cat("/mnt/pool/job-", plain, "/checkpoints"));
  EXPECT_EQ(beat.starts[1].job, own);
  EXPECT_EQ(beat.starts[1].checkpoint_dir, "/data/mine");
  // The next attempt, on any host, gets the same folder.
  beat = a.beat({{own, 1, 0}}, {{plain, 1, 0, kPreemptedExitCode}});
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].attempt, 2u);
  EXPECT_TRUE(beat.starts[0].resume);
  EXPECT_EQ(beat.starts[0].checkpoint_dir, str_cat("/mnt/pool/job-", plain, "/checkpoints"));
  // Without --shared-dir: none (the worker keeps checkpoints in its own folder).
  coordinator_.reset();
  start();
  int64_t local = client().submit_text(recipe_text(), "r.yaml", 1, 0, "t");
  FakeWorker b(coordinator_->address(), "b", 1);
  beat = b.beat();
  ASSERT_EQ(beat.starts.size(), 1u);
  EXPECT_EQ(beat.starts[0].job, local);
  EXPECT_EQ(beat.starts[0].checkpoint_dir, "");
}

}  // namespace
}  // namespace petaring::cluster
