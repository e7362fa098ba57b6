#include "cluster/state.h"

#include <sqlite3.h>

#include <chrono>

#include "runtime/check.h"
#include "runtime/error.h"

namespace petaring::cluster {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS nodes (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
  node_id INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT NOT NULL,
  memory_bytes INTEGER NOT NULL, flops_per_s REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (node_id, idx));
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, recipe_yaml TEXT NOT NULL,
  gpus INTEGER NOT NULL, priority INTEGER NOT NULL, tenant TEXT NOT NULL,
  state TEXT NOT NULL, attempt INTEGER NOT NULL, reason TEXT NOT NULL,
  last_metrics TEXT NOT NULL, submitted_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL, min_gpus INTEGER NOT NULL DEFAULT 0,
  max_gpus INTEGER NOT NULL DEFAULT 0, after_stop TEXT NOT NULL DEFAULT '',
  failures INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS assignments (
  job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, rank INTEGER NOT NULL,
  node_id INTEGER NOT NULL, device_idx INTEGER NOT NULL, state TEXT NOT NULL,
  exit_code INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, rank));
CREATE TABLE IF NOT EXISTS ledger (
  id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
  tenant TEXT NOT NULL, node_id INTEGER NOT NULL, gpu_seconds REAL NOT NULL,
  recorded_ms INTEGER NOT NULL, flops REAL NOT NULL DEFAULT 0);
)sql";

// Columns added after the first release: state files written before them get them here.
constexpr const char* kAddedColumns[] = {
    "ALTER TABLE devices ADD COLUMN flops_per_s REAL NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN min_gpus INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN max_gpus INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE ledger ADD COLUMN flops REAL NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN after_stop TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
};

// One prepared statement; binds by position (1-based) and steps.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      PR_FAIL(kInternal, "SQLite cannot prepare '", sql, "': ", sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); return *this; }
  Statement& bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); return *this; }
  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // True while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    PR_FAIL(kFailedPrecondition, "SQLite step failed: ", sqlite3_errmsg(db_),
            "; is the state file on a full or read-only disk?");
  }
  void run() { step(); }
  int64_t i64(int col) { return sqlite3_column_int64(stmt_, col); }
  double f64(int col) { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

struct PoolState::Db {
  sqlite3* db = nullptr;
  std::string path;
  void exec(const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = message ? message : "?";
      sqlite3_free(message);
      PR_FAIL(kFailedPrecondition, "SQLite on ", path, ": ", text, " (running '", sql, "')");
    }
  }
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it throws.
  template <typename F>
  void transaction(F&& body) {
    exec("BEGIN IMMEDIATE");
    try {
      body();
    } catch (...) {
      exec("ROLLBACK");
      throw;
    }
    exec("COMMIT");
  }
};

PoolState::PoolState(const std::string& path) : db_(std::make_unique<Db>()) {
  db_->path = path;
  if (sqlite3_open(path.c_str(), &db_->db) != SQLITE_OK) {
    std::string why = db_->db ? sqlite3_errmsg(db_->db) : "out of memory";
    sqlite3_close(db_->db);
    db_->db = nullptr;
    PR_FAIL(kFailedPrecondition, "cannot open the pool state file '", path, "': ", why,
            "; check the folder exists and is writable");
  }
  sqlite3_busy_timeout(db_->db, 5000);
  db_->exec("PRAGMA journal_mode=WAL");
  db_->exec("PRAGMA synchronous=FULL");
  db_->exec(kSchema);
  for (const char* sql : kAddedColumns) {
    // Fails with "duplicate column" when the column is there already (the usual case).
    sqlite3_exec(db_->db, sql, nullptr, nullptr, nullptr);
  }
}

PoolState::~PoolState() {
  if (db_->db) sqlite3_close(db_->db);
}

int64_t PoolState::upsert_node(const std::string& name, const std::vector<DeviceRow>& devices) {
  int64_t id = 0;
  db_->transaction([&] {
    Statement find(db_->db, "SELECT id FROM nodes WHERE name = ?");
    find.bind(1, name);
    if (find.step()) {
      id = find.i64(0);
      Statement(db_->db, "UPDATE nodes SET state = 'alive' WHERE id = ?").bind(1, id).run();
    } else {
      Statement(db_->db, "INSERT INTO nodes (name, state) VALUES (?, 'alive')").bind(1, name).run();
      id = sqlite3_last_insert_rowid(db_->db);
    }
    Statement(db_->db, "DELETE FROM devices WHERE node_id = ?").bind(1, id).run();
    for (const DeviceRow& d : devices) {
      Statement(db_->db, "INSERT INTO devices (node_id, idx, kind, memory_bytes, flops_per_s) VALUES (?, ?, ?, ?, ?)")
          .bind(1, id).bind(2, int64_t{d.index}).bind(3, d.kind)
          .bind(4, static_cast<int64_t>(d.memory_bytes)).bind(5, d.flops_per_s).run();
    }
  });
  return id;
}

void PoolState::set_node_state(int64_t node_id, const std::string& state) {
  Statement(db_->db, "UPDATE nodes SET state = ? WHERE id = ?").bind(1, state).bind(2, node_id).run();
}

std::vector<NodeRow> PoolState::nodes() {
  std::vector<NodeRow> rows;
  Statement nodes(db_->db, "SELECT id, name, state FROM nodes ORDER BY id");
  while (nodes.step()) rows.push_back({nodes.i64(0), nodes.text(1), nodes.text(2), {}});
  for (NodeRow& node : rows) {
    Statement devices(db_->db,
                      "SELECT idx, kind, memory_bytes, flops_per_s FROM devices WHERE node_id = ? ORDER BY idx");
    devices.bind(1, node.id);
    while (devices.step()) {
      node.devices.push_back({static_cast<uint32_t>(devices.i64(0)), devices.text(1),
                              static_cast<uint64_t>(devices.i64(2)), devices.f64(3)});
    }
  }
  return rows;
}

namespace {
void bind_job(Statement& s, const JobRow& j) {
  s.bind(1, j.name).bind(2, j.recipe_yaml).bind(3, int64_t{j.gpus}).bind(4, int64_t{j.priority})
      .bind(5, j.tenant).bind(6, j.state).bind(7, int64_t{j.attempt}).bind(8, j.reason)
      .bind(9, j.last_metrics).bind(10, j.submitted_ms).bind(11, j.started_ms).bind(12, j.finished_ms)
      .bind(13, int64_t{j.min_gpus}).bind(14, int64_t{j.max_gpus}).bind(15, j.after_stop)
      .bind(16, int64_t{j.failures});
}
void write_job(sqlite3* db, const JobRow& job) {
  Statement s(db,
              "UPDATE jobs SET name=?, recipe_yaml=?, gpus=?, priority=?, tenant=?, state=?, "
              "attempt=?, reason=?, last_metrics=?, submitted_ms=?, started_ms=?, finished_ms=?, "
              "min_gpus=?, max_gpus=?, after_stop=?, failures=? WHERE id=?");
  bind_job(s, job);
  s.bind(17, job.id).run();
}
}  // namespace

int64_t PoolState::add_job(const JobRow& job) {
  Statement s(db_->db,
              "INSERT INTO jobs (name, recipe_yaml, gpus, priority, tenant, state, attempt, "
              "reason, last_metrics, submitted_ms, started_ms, finished_ms, min_gpus, max_gpus, after_stop, "
              "failures) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  bind_job(s, job);
  s.run();
  return sqlite3_last_insert_rowid(db_->db);
}

void PoolState::update_job(const JobRow& job) { write_job(db_->db, job); }

std::vector<JobRow> PoolState::jobs() {
  std::vector<JobRow> rows;
  Statement s(db_->db,
              "SELECT id, name, recipe_yaml, gpus, priority, tenant, state, attempt, reason, "
              "last_metrics, submitted_ms, started_ms, finished_ms, min_gpus, max_gpus, after_stop, failures "
              "FROM jobs ORDER BY id");
  while (s.step()) {
    JobRow j;
    j.id = s.i64(0);
    j.name = s.text(1);
    j.recipe_yaml = s.text(2);
    j.gpus = static_cast<uint32_t>(s.i64(3));
    j.priority = static_cast<int32_t>(s.i64(4));
    j.tenant = s.text(5);
    j.state = s.text(6);
    j.attempt = static_cast<uint32_t>(s.i64(7));
    j.reason = s.text(8);
    j.last_metrics = s.text(9);
    j.submitted_ms = s.i64(10);
    j.started_ms = s.i64(11);
    j.finished_ms = s.i64(12);
    // Rows from before elastic jobs have 0 here: they were rigid.
    j.min_gpus = s.i64(13) > 0 ? static_cast<uint32_t>(s.i64(13)) : j.gpus;
    j.max_gpus = s.i64(14) > 0 ? static_cast<uint32_t>(s.i64(14)) : j.gpus;
    j.after_stop = s.text(15);
    j.failures = static_cast<uint32_t>(s.i64(16));
    rows.push_back(std::move(j));
  }
  return rows;
}

void PoolState::start_attempt(const JobRow& job, const std::vector<AssignmentRow>& assignments) {
  db_->transaction([&] {
    write_job(db_->db, job);
    for (const AssignmentRow& a : assignments) {
      Statement(db_->db, "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?)")
          .bind(1, a.job_id).bind(2, int64_t{a.attempt}).bind(3, int64_t{a.rank})
          .bind(4, a.node_id).bind(5, int64_t{a.device_index}).bind(6, a.state)
          .bind(7, int64_t{a.exit_code}).run();
    }
  });
}

void PoolState::set_assignment_end(int64_t job_id, uint32_t attempt, uint32_t rank, const std::string& state,
                                   int32_t exit_code) {
  Statement(db_->db, "UPDATE assignments SET state=?, exit_code=? WHERE job_id=? AND attempt=? AND rank=?")
      .bind(1, state).bind(2, int64_t{exit_code}).bind(3, job_id).bind(4, int64_t{attempt}).bind(5, int64_t{rank})
      .run();
}

namespace {
std::vector<AssignmentRow> read_assignments(Statement& s) {
  std::vector<AssignmentRow> rows;
  while (s.step()) {
    rows.push_back({s.i64(0), static_cast<uint32_t>(s.i64(1)), static_cast<uint32_t>(s.i64(2)),
                    s.i64(3), static_cast<uint32_t>(s.i64(4)), s.text(5),
                    static_cast<int32_t>(s.i64(6))});
  }
  return rows;
}
}  // namespace

std::vector<AssignmentRow> PoolState::assignments(int64_t job_id, uint32_t attempt) {
  Statement s(db_->db,
              "SELECT job_id, attempt, rank, node_id, device_idx, state, exit_code FROM assignments "
              "WHERE job_id=? AND attempt=? ORDER BY rank");
  s.bind(1, job_id).bind(2, int64_t{attempt});
  return read_assignments(s);
}

std::vector<AssignmentRow> PoolState::running_assignments() {
  Statement s(db_->db,
              "SELECT a.job_id, a.attempt, a.rank, a.node_id, a.device_idx, a.state, a.exit_code "
              "FROM assignments a JOIN jobs j ON a.job_id = j.id AND a.attempt = j.attempt "
              "WHERE j.state IN ('running', 'stopping') ORDER BY a.job_id, a.rank");
  return read_assignments(s);
}

void PoolState::end_attempt(const JobRow& job, const std::vector<LedgerRow>& entries) {
  db_->transaction([&] {
    write_job(db_->db, job);
    for (const LedgerRow& e : entries) {
      Statement(db_->db,
                "INSERT INTO ledger (job_id, attempt, tenant, node_id, gpu_seconds, recorded_ms, flops) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
          .bind(1, e.job_id).bind(2, int64_t{e.attempt}).bind(3, e.tenant).bind(4, e.node_id)
          .bind(5, e.gpu_seconds).bind(6, e.recorded_ms).bind(7, e.flops).run();
    }
  });
}

std::vector<LedgerRow> PoolState::ledger() {
  std::vector<LedgerRow> rows;
  Statement s(db_->db,
              "SELECT id, job_id, attempt, tenant, node_id, gpu_seconds, flops, recorded_ms FROM ledger "
              "ORDER BY id");
  while (s.step()) {
    rows.push_back({s.i64(0), s.i64(1), static_cast<uint32_t>(s.i64(2)), s.text(3), s.i64(4),
                    s.f64(5), s.f64(6), s.i64(7)});
  }
  return rows;
}

}  // namespace petaring::cluster
