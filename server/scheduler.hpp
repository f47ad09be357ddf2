// The job queue and its workers.
//
// Fairness on a shared lab server: one queue per user, FIFO within a user, round-robin across
// users, so one student submitting 500 jobs delays a colleague's single job by at most one job
// per worker. A priority field overrides that: the next job is taken from the users whose queue
// head has the highest priority, round-robin among them (within a user, higher priority first,
// then submission order).
//
// Jobs submitted with SubmitJob are persisted (Store) on every state change; the unary Analyze
// RPC runs through the same queue as an "ephemeral" job that lives only in memory, so both kinds
// share the workers (= the device) fairly.
//
// Cancellation: each job owns an atomic flag handed to basin::analyze through RunControl; the
// engine stops at its next step boundary with Error(kCancelled).
//
// Memory: queued and running jobs live in memory; a finished job stays only while it is among
// the `keep_finished_in_memory` most recently finished ones, and only once its final state is
// in the database (a job whose final write failed stays, since memory is then the only copy).
// Get / Watch / Cancel / List of a job that left memory read its row (and result) from the
// database and answer exactly what they answered before. Ephemeral jobs are removed as soon as
// their Analyze call has its answer (or has gone away).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/v1/basin.pb.h"
#include "store.hpp"

namespace basin::server {

struct Job {
  JobRow row;
  int64_t order = 0;  // submission order in this process (FIFO key; ephemeral jobs have no seq)
  bool ephemeral = false;
  std::string stage = "validate";
  // The step within the stage while running ("lanczos 37/1201 (12/20 converged)"); empty
  // otherwise. Not persisted: a finished job has none.
  std::string stage_detail;
  double fraction = 0;
  std::atomic<bool> cancel{false};
  // Why the cancel flag was set: CANCELLED (CancelJob / client gone) or DEADLINE_EXCEEDED.
  int cancel_code = 0;
  std::string cancel_reason;
  bool requeue_on_cancel = false;  // set by shutdown: put back in the queue instead
  bool abandoned = false;          // ephemeral: nobody waits for it any more
  // Per-stage timing for the metrics (wall clock of the stage in progress).
  std::chrono::steady_clock::time_point stage_started;
  // Ephemeral jobs keep request and result in memory.
  std::shared_ptr<v1::AnalyzeRequest> request;
  std::shared_ptr<v1::AnalyzeResponse> result;
};

struct QueueMetrics {
  int64_t queue_depth = 0;
  std::map<std::string, int64_t> jobs_by_state;  // "queued", "running", ...
  std::map<std::string, double> stage_seconds_sum;
  std::map<std::string, int64_t> stage_seconds_count;
  int64_t jobs_in_memory = 0;  // every Job object held (any state, Analyze calls included)
};

class JobManager {
 public:
  // Runs one request on the engine. Called on a worker thread; throws basin::Error.
  using Runner = std::function<v1::AnalyzeResponse(const std::string& user,
                                                   const v1::AnalyzeRequest& request,
                                                   const RunControl& control)>;
  struct Options {
    int workers = 1;
    int64_t max_queued_jobs_per_user = 100;
    int max_attempts = 3;  // runs interrupted by crashes before a job is marked failed
    // Finished (succeeded / failed / cancelled) submitted jobs kept in memory, most recently
    // finished first; older ones are served from the database. 0 = none.
    int64_t keep_finished_in_memory = 256;
  };

  JobManager(Store* store, Options options, Runner runner);
  ~JobManager();

  // Loads persisted jobs: queued ones are re-enqueued; ones that were running when the server
  // died are re-run, or failed with the reason after max_attempts interrupted runs. Of the
  // finished ones only the keep_finished_in_memory most recent are loaded.
  void recover();
  void start();

  // New work. Throws Error(kResourceExhausted) on the queued-jobs quota, Error(kUnavailable)
  // when shutting down. The request must already be validated.
  std::string submit(const std::string& user, const v1::AnalyzeRequest& request, int priority,
                     bool ephemeral);

  // Fills *out with the job as `user` sees it; false when it does not exist for that user.
  bool get(const std::string& user, const std::string& id, bool include_result, v1::Job* out);
  // Cancels a queued (at once) or running (at the engine's next step) job.
  bool cancel(const std::string& user, const std::string& id, v1::Job* out);
  std::vector<v1::Job> list(const std::string& user, const std::vector<int>& states, int limit);

  // Blocks until the job's visible status differs from `last` (or it is final), `should_stop`
  // returns true, or ~250 ms pass. Returns false when the job is unknown.
  bool wait_for_change(const std::string& user, const std::string& id, const v1::Job& last,
                       const std::function<bool()>& should_stop, v1::Job* out);

  // Analyze: waits for an ephemeral job, honouring the caller's cancellation and deadline.
  // Returns the response or throws basin::Error (kCancelled / kDeadlineExceeded / the job's).
  v1::AnalyzeResponse wait_ephemeral(const std::string& id,
                                     const std::function<bool()>& client_cancelled,
                                     std::chrono::system_clock::time_point deadline);

  // Graceful shutdown: refuse new work at once; let running jobs finish for up to `timeout`,
  // then cancel them (submitted jobs back into the queue, Analyze calls answered UNAVAILABLE)
  // and wait up to `grace` for the engine to notice; stop the workers. Returns false, without
  // joining the workers, when a run outlived the grace too (a BLAS/LAPACK call cannot be
  // interrupted): the caller then exits through requeue_running_for_exit.
  void begin_shutdown();
  bool drain_and_stop(std::chrono::milliseconds timeout,
                      std::chrono::milliseconds grace = std::chrono::seconds(3));
  // For a process about to _exit with work still running: each running submitted job is
  // written back to the database as queued (its interrupted run not counted as an attempt),
  // so the next start runs it again. Returns "id (user, stage)" of every running job, Analyze
  // calls included, for the log.
  std::vector<std::string> requeue_running_for_exit();
  bool accepting() const { return accepting_.load(); }

  QueueMetrics metrics();
  int64_t queue_length();

 private:
  void worker_loop();
  std::shared_ptr<Job> pick_next_locked();
  void enqueue_locked(const std::shared_ptr<Job>& job);
  void remove_from_queue_locked(const std::shared_ptr<Job>& job);
  std::map<std::string, int64_t> queue_positions_locked() const;
  void fill_locked(const Job& job, int64_t position, v1::Job* out) const;
  // A finished job that is not in memory, from the database; false when `user` has none `id`.
  bool load_finished(const std::string& user, const std::string& id, v1::Job* out);
  // `job` (persistent, finished, its final state in the database) joins the finished jobs in
  // memory; the oldest ones beyond keep_finished_in_memory leave.
  void retire_locked(const std::shared_ptr<Job>& job);
  void on_progress(const std::shared_ptr<Job>& job, Stage stage, double fraction);
  void on_detail(const std::shared_ptr<Job>& job, const std::string& detail);
  void close_stage_locked(Job& job);
  bool persist(const JobRow& row, const std::string* result_bytes);  // false: logged failure
  std::string new_id_locked();

  Store* store_;
  Options options_;
  Runner runner_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;     // workers: a job was queued / stopping
  std::condition_variable changed_cv_;  // watchers: any job changed
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  // Per-user queues, each sorted by (priority desc, seq asc).
  std::map<std::string, std::vector<std::shared_ptr<Job>>> queues_;
  std::string last_served_user_;
  int64_t queued_count_ = 0;
  int64_t next_order_ = 0;
  int running_ = 0;
  std::atomic<bool> accepting_{true};
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::mt19937_64 rng_;
  QueueMetrics stage_totals_;
  // Ids of the finished jobs in memory whose final state is persisted, oldest finish first.
  std::deque<std::string> finished_in_memory_;
  // Finished jobs only in the database, by state (the metrics count every job known).
  std::map<JobState, int64_t> finished_on_disk_;
};

const char* job_state_name(JobState s);

}  // namespace basin::server
