#include "sqlite_db.hpp"

#include <cerrno>

#include "basin/error.hpp"
#include "disk_space.hpp"

namespace basin::server {

void sqlite_check(int rc, sqlite3* db, const char* what, const char* file, int line) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
  std::string msg = std::string("sqlite: ") + what + " failed with " + sqlite3_errstr(rc);
  if (db != nullptr) msg += std::string(" (") + sqlite3_errmsg(db) + ")";
  msg += std::string(" at ") + file + ":" + std::to_string(line);  // for the log only
  // A full disk is the operator's problem, not a bug: RESOURCE_EXHAUSTED (disk_space.hpp).
  const int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
  if (rc == SQLITE_FULL || (rc & 0xff) == SQLITE_FULL ||
      ((rc & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT))) {
    throw StorageFull(msg);
  }
  throw Error(ErrorCode::kInternal, msg);
}

Statement::Statement(sqlite3* db, const std::string& sql) : db_(db) {
  SQLITE_CHECK(db_, sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt_,
                                       nullptr));
}

Statement::~Statement() {
  // finalize returns the last step's error, which step() has already reported.
  if (stmt_ != nullptr) (void)sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, int64_t value) {
  SQLITE_CHECK(db_, sqlite3_bind_int64(stmt_, index, value));
  return *this;
}

Statement& Statement::bind(int index, const std::string& text) {
  SQLITE_CHECK(db_, sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                                      SQLITE_TRANSIENT));
  return *this;
}

Statement& Statement::bind_blob(int index, const std::string& bytes) {
  SQLITE_CHECK(db_, sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(),
                                        SQLITE_TRANSIENT));
  return *this;
}

Statement& Statement::bind_double(int index, double value) {
  SQLITE_CHECK(db_, sqlite3_bind_double(stmt_, index, value));
  return *this;
}

Statement& Statement::bind_null(int index) {
  SQLITE_CHECK(db_, sqlite3_bind_null(stmt_, index));
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  SQLITE_CHECK(db_, rc);
  return rc == SQLITE_ROW;
}

int64_t Statement::column_int64(int col) const { return sqlite3_column_int64(stmt_, col); }

double Statement::column_double(int col) const { return sqlite3_column_double(stmt_, col); }

std::string Statement::column_text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  const int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::string Statement::column_blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  const int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

bool Statement::column_is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

Database::Database(const std::string& path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    // sqlite3_open_v2 allocates a handle even on failure; close it before throwing.
    std::string msg = std::string("sqlite: cannot open ") + path + ": " +
                      (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    (void)sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::kInternal, msg);
  }
  SQLITE_CHECK(db_, sqlite3_busy_timeout(db_, 5000));
  // WAL: readers never block the writer; with synchronous=FULL every committed job state
  // survives kill -9 and power loss alike.
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=FULL");
  exec("PRAGMA foreign_keys=ON");
}

Database::~Database() {
  if (db_ != nullptr) (void)sqlite3_close_v2(db_);
}

void Database::exec(const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = std::string("sqlite: ") + sql + ": " + (err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    throw Error(ErrorCode::kInternal, msg);
  }
}

}  // namespace basin::server
