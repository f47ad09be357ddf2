// Persistent state of basind under --data-dir:
//   basin.db     SQLite (WAL): jobs (request as proto bytes, state, timestamps, error, result
//                bytes) and blob ownership (which user uploaded which content)
//   blobs/<hex>  blob contents, named by their sha256
//   tmp/         uploads in progress; emptied at startup
//
// A blob becomes visible only by rename(2) after the whole upload arrived and its hash was
// verified, and only then is its ownership row written: a client that disconnects mid-upload
// (or a server killed mid-upload) leaves nothing that any id can reach.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sqlite_db.hpp"

namespace basin::server {

// Job states as stored (the numbers are basin.v1.JobState's).
enum class JobState : int { kQueued = 1, kRunning = 2, kSucceeded = 3, kFailed = 4, kCancelled = 5 };
bool is_terminal(JobState s);

struct JobRow {
  std::string id;
  int64_t seq = 0;  // submission order (FIFO within a user)
  std::string user;
  JobState state = JobState::kQueued;
  int priority = 0;
  int64_t created_ms = 0, started_ms = 0, finished_ms = 0;
  int attempts = 0;
  int error_code = 0;  // grpc::StatusCode, 0 when none
  std::string error_message;
  // Progress when the job reached its final state (kept so that a finished job read back from
  // the database shows what it showed in memory; 0 while it is not finished).
  double fraction = 0;
};

class Store {
 public:
  explicit Store(const std::string& data_dir);

  // ---- jobs ----
  // Inserts a new job; fills row->seq.
  void insert_job(JobRow* row, const std::string& request_bytes);
  void update_job(const JobRow& row);  // state, times, attempts, error, fraction
  void finish_job(const JobRow& row, const std::string& result_bytes);  // + result, one txn
  std::string load_request(const std::string& id);
  std::optional<std::string> load_result(const std::string& id);

  // Restart recovery: the jobs not finished (queued or running), by seq; the `n` most recently
  // finished ones, oldest first; how many finished jobs there are in each final state.
  std::vector<JobRow> load_unfinished_jobs();
  std::vector<JobRow> load_recent_finished_jobs(int64_t n);
  std::map<JobState, int64_t> count_finished_jobs();
  // Finished jobs that are no longer held in memory are read from here. One row (without the
  // request and result), or nullopt.
  std::optional<JobRow> load_job(const std::string& id);
  // `user`'s finished jobs whose state is one of `states` (all final states when empty),
  // newest (highest seq) first, at most `limit`.
  std::vector<JobRow> list_finished_jobs(const std::string& user, const std::vector<int>& states,
                                         int64_t limit);

  // ---- blobs ----
  const std::string& tmp_dir() const { return tmp_dir_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string blob_path(const std::string& hex) const { return blob_dir_ + "/" + hex; }
  // Moves a complete, verified upload into place (or drops it if the content exists) and
  // records that `user` owns it. Returns true when the content already existed (dedup).
  // `newly_owned` says whether the user did not own it before (quota accounting).
  bool commit_blob(const std::string& user, const std::string& hex, int64_t size,
                   const std::string& tmp_path, bool* newly_owned);
  bool user_owns_blob(const std::string& user, const std::string& hex);
  int64_t user_blob_bytes(const std::string& user);

 private:
  void write_job(const JobRow& row, const std::string* result_bytes);  // update_job / finish_job
  std::mutex mu_;  // one connection, one writer at a time
  std::string data_dir_, blob_dir_, tmp_dir_;
  std::unique_ptr<Database> db_;
};

int64_t now_unix_ms();

}  // namespace basin::server
