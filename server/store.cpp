#include "store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "basin/error.hpp"

namespace basin::server {
namespace {

// Owner only: the job database and blobs hold every user's requests and results.
void make_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error(ErrorCode::kInternal, "cannot create directory " + path + ": " + strerror(errno));
  }
}

// fsync a directory so that a rename into it survives power loss, not just a crash.
void sync_dir(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)fsync(fd);
    (void)close(fd);
  }
}

// Leftovers of uploads interrupted by a crash: never committed, so nothing refers to them.
void empty_dir(const std::string& path) {
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    (void)unlink((path + "/" + e->d_name).c_str());
  }
  closedir(d);
}

}  // namespace

bool is_terminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Store::Store(const std::string& data_dir)
    : data_dir_(data_dir), blob_dir_(data_dir + "/blobs"), tmp_dir_(data_dir + "/tmp") {
  make_dir(data_dir_);
  make_dir(blob_dir_);
  make_dir(tmp_dir_);
  empty_dir(tmp_dir_);
  db_ = std::make_unique<Database>(data_dir_ + "/basin.db");
  db_->exec(
      "CREATE TABLE IF NOT EXISTS jobs ("
      " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
      " id TEXT NOT NULL UNIQUE,"
      " user TEXT NOT NULL,"
      " state INTEGER NOT NULL,"
      " priority INTEGER NOT NULL,"
      " request BLOB NOT NULL,"
      " created_ms INTEGER NOT NULL,"
      " started_ms INTEGER NOT NULL DEFAULT 0,"
      " finished_ms INTEGER NOT NULL DEFAULT 0,"
      " attempts INTEGER NOT NULL DEFAULT 0,"
      " error_code INTEGER NOT NULL DEFAULT 0,"
      " error_message TEXT NOT NULL DEFAULT '',"
      " result BLOB,"
      " fraction REAL NOT NULL DEFAULT 0);"
      "CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user);"
      "CREATE TABLE IF NOT EXISTS blob_owners ("
      " user TEXT NOT NULL,"
      " hex TEXT NOT NULL,"
      " size INTEGER NOT NULL,"
      " created_ms INTEGER NOT NULL,"
      " PRIMARY KEY (user, hex));");
  // Databases written before the final progress was stored: add the column (old finished rows
  // read 0, what a restart showed for them before).
  bool has_fraction = false;
  {
    Statement st(db_->handle(), "PRAGMA table_info(jobs)");
    while (st.step()) has_fraction = has_fraction || st.column_text(1) == "fraction";
  }
  if (!has_fraction) db_->exec("ALTER TABLE jobs ADD COLUMN fraction REAL NOT NULL DEFAULT 0");
}

void Store::insert_job(JobRow* row, const std::string& request_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(),
               "INSERT INTO jobs (id, user, state, priority, request, created_ms, attempts)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, row->id).bind(2, row->user).bind(3, static_cast<int64_t>(row->state));
  st.bind(4, static_cast<int64_t>(row->priority)).bind_blob(5, request_bytes);
  st.bind(6, row->created_ms).bind(7, static_cast<int64_t>(row->attempts));
  st.run();
  row->seq = sqlite3_last_insert_rowid(db_->handle());
}

void Store::update_job(const JobRow& row) { write_job(row, nullptr); }

void Store::finish_job(const JobRow& row, const std::string& result_bytes) { write_job(row, &result_bytes); }

// One UPDATE of the job's mutable columns, plus its result when given (one statement, so the
// final state and the result land together).
void Store::write_job(const JobRow& row, const std::string* result_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(),
               std::string("UPDATE jobs SET state = ?, started_ms = ?, finished_ms = ?, attempts = ?,"
                           " error_code = ?, error_message = ?, fraction = ?") +
                   (result_bytes ? ", result = ?" : "") + " WHERE id = ?");
  st.bind(1, static_cast<int64_t>(row.state)).bind(2, row.started_ms).bind(3, row.finished_ms);
  st.bind(4, static_cast<int64_t>(row.attempts)).bind(5, static_cast<int64_t>(row.error_code));
  st.bind(6, row.error_message).bind_double(7, row.fraction);
  int next = 8;
  if (result_bytes) st.bind_blob(next++, *result_bytes);
  st.bind(next, row.id);
  st.run();
}

namespace {

// The columns read_row expects, in its order.
constexpr const char* kRowColumns =
    "seq, id, user, state, priority, created_ms, started_ms, finished_ms, attempts, error_code,"
    " error_message, fraction";

JobRow read_row(const Statement& st) {
  JobRow r;
  r.seq = st.column_int64(0);
  r.id = st.column_text(1);
  r.user = st.column_text(2);
  r.state = static_cast<JobState>(st.column_int64(3));
  r.priority = static_cast<int>(st.column_int64(4));
  r.created_ms = st.column_int64(5);
  r.started_ms = st.column_int64(6);
  r.finished_ms = st.column_int64(7);
  r.attempts = static_cast<int>(st.column_int64(8));
  r.error_code = static_cast<int>(st.column_int64(9));
  r.error_message = st.column_text(10);
  r.fraction = st.column_double(11);
  return r;
}

const std::string kFinishedStates = "(" +
                                    std::to_string(static_cast<int>(JobState::kSucceeded)) + ", " +
                                    std::to_string(static_cast<int>(JobState::kFailed)) + ", " +
                                    std::to_string(static_cast<int>(JobState::kCancelled)) + ")";

}  // namespace

std::vector<JobRow> Store::load_unfinished_jobs() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), std::string("SELECT ") + kRowColumns +
                                  " FROM jobs WHERE state NOT IN " + kFinishedStates +
                                  " ORDER BY seq");
  std::vector<JobRow> rows;
  while (st.step()) rows.push_back(read_row(st));
  return rows;
}

std::vector<JobRow> Store::load_recent_finished_jobs(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), std::string("SELECT ") + kRowColumns +
                                  " FROM jobs WHERE state IN " + kFinishedStates +
                                  " ORDER BY finished_ms DESC, seq DESC LIMIT ?");
  st.bind(1, n);
  std::vector<JobRow> rows;
  while (st.step()) rows.push_back(read_row(st));
  return std::vector<JobRow>(rows.rbegin(), rows.rend());
}

std::map<JobState, int64_t> Store::count_finished_jobs() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), "SELECT state, COUNT(*) FROM jobs WHERE state IN " +
                                  kFinishedStates + " GROUP BY state");
  std::map<JobState, int64_t> counts;
  while (st.step()) counts[static_cast<JobState>(st.column_int64(0))] = st.column_int64(1);
  return counts;
}

std::optional<JobRow> Store::load_job(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), std::string("SELECT ") + kRowColumns + " FROM jobs WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_row(st);
}

std::vector<JobRow> Store::list_finished_jobs(const std::string& user,
                                              const std::vector<int>& states, int64_t limit) {
  std::vector<int> wanted;
  for (int s : states) {
    if (is_terminal(static_cast<JobState>(s))) wanted.push_back(s);
  }
  if (states.empty()) {
    for (JobState s : {JobState::kSucceeded, JobState::kFailed, JobState::kCancelled}) {
      wanted.push_back(static_cast<int>(s));
    }
  }
  if (wanted.empty() || limit <= 0) return {};
  std::string in = "(";
  for (size_t i = 0; i < wanted.size(); ++i) in += i == 0 ? "?" : ", ?";
  in += ")";
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), std::string("SELECT ") + kRowColumns +
                                  " FROM jobs WHERE user = ? AND state IN " + in +
                                  " ORDER BY seq DESC LIMIT ?");
  int index = 1;
  st.bind(index++, user);
  for (int s : wanted) st.bind(index++, static_cast<int64_t>(s));
  st.bind(index, limit);
  std::vector<JobRow> rows;
  while (st.step()) rows.push_back(read_row(st));
  return rows;
}

std::string Store::load_request(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), "SELECT request FROM jobs WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) throw Error(ErrorCode::kNotFound, "job " + id + " is not in the database");
  return st.column_blob(0);
}

std::optional<std::string> Store::load_result(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), "SELECT result FROM jobs WHERE id = ?");
  st.bind(1, id);
  if (!st.step() || st.column_is_null(0)) return std::nullopt;
  return st.column_blob(0);
}

bool Store::commit_blob(const std::string& user, const std::string& hex, int64_t size,
                        const std::string& tmp_path, bool* newly_owned) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string final_path = blob_path(hex);
  struct stat sb;
  bool existed = stat(final_path.c_str(), &sb) == 0;
  if (existed) {
    (void)unlink(tmp_path.c_str());
  } else {
    if (rename(tmp_path.c_str(), final_path.c_str()) != 0) {
      const std::string why = strerror(errno);
      (void)unlink(tmp_path.c_str());
      throw Error(ErrorCode::kInternal, "cannot store blob " + hex + ": " + why);
    }
    sync_dir(blob_dir_);
  }
  Statement st(db_->handle(),
               "INSERT OR IGNORE INTO blob_owners (user, hex, size, created_ms) VALUES (?,?,?,?)");
  st.bind(1, user).bind(2, hex).bind(3, size).bind(4, now_unix_ms());
  st.run();
  *newly_owned = sqlite3_changes(db_->handle()) > 0;
  return existed;
}

bool Store::user_owns_blob(const std::string& user, const std::string& hex) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), "SELECT 1 FROM blob_owners WHERE user = ? AND hex = ?");
  st.bind(1, user).bind(2, hex);
  return st.step();
}

int64_t Store::user_blob_bytes(const std::string& user) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement st(db_->handle(), "SELECT COALESCE(SUM(size), 0) FROM blob_owners WHERE user = ?");
  st.bind(1, user);
  return st.step() ? st.column_int64(0) : 0;
}

}  // namespace basin::server
