// A thin RAII wrapper over the SQLite C API.
//
// Every sqlite3_* return code goes through SQLITE_CHECK, which throws basin::Error(kInternal)
// carrying the statement, the code and sqlite3_errmsg -- so a full disk or a corrupt database
// becomes an INTERNAL status for one request instead of a crash or a silently lost job.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace basin::server {

// Throws unless `rc` is one of the success codes SQLite uses (OK, ROW, DONE).
void sqlite_check(int rc, sqlite3* db, const char* what, const char* file, int line);
#define SQLITE_CHECK(db, expr) ::basin::server::sqlite_check((expr), (db), #expr, __FILE__, __LINE__)

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // 1-based parameter index, as in SQLite.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, const std::string& text);
  Statement& bind_blob(int index, const std::string& bytes);
  Statement& bind_double(int index, double value);  // not an overload: bind(i, 0) stays unambiguous
  Statement& bind_null(int index);

  // True while a row is available; false when the statement is done.
  bool step();
  void run() { while (step()) {} }  // statements that return no rows

  int64_t column_int64(int col) const;
  double column_double(int col) const;
  std::string column_text(int col) const;
  std::string column_blob(int col) const;
  bool column_is_null(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Database {
 public:
  // Opens (creating) `path`, switches to WAL, sets a busy timeout.
  explicit Database(const std::string& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(const std::string& sql);
  sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace basin::server
