#include "scheduler.hpp"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "basin/error.hpp"
#include "basin/wire/grpc_status.hpp"

namespace basin::server {

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kSucceeded: return "succeeded";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

namespace {
// Queue order within one user: higher priority first, then submission order.
bool runs_before(const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) {
  if (a->row.priority != b->row.priority) return a->row.priority > b->row.priority;
  return a->order < b->order;
}

void log_error(const std::string& what) { std::fprintf(stderr, "basind: %s\n", what.c_str()); }

// What a finished job shows: its final progress (1 when it succeeded).
double final_fraction(const JobRow& row) {
  return row.state == JobState::kSucceeded ? 1.0 : row.fraction;
}

void fill_job(const JobRow& row, const std::string& stage, double fraction, int64_t position,
              v1::Job* out, const std::string& stage_detail = {}) {
  out->Clear();
  out->set_id(row.id);
  out->set_user(row.user);
  out->set_state(static_cast<v1::JobState>(row.state));
  out->set_priority(row.priority);
  out->set_queue_position(row.state == JobState::kQueued ? position : -1);
  out->set_stage(stage);
  out->set_stage_detail(stage_detail);
  out->set_fraction(fraction);
  out->set_created_unix_ms(row.created_ms);
  out->set_started_unix_ms(row.started_ms);
  out->set_finished_unix_ms(row.finished_ms);
  out->set_attempts(row.attempts);
  if (row.error_code != 0) {
    out->mutable_error()->set_grpc_code(row.error_code);
    out->mutable_error()->set_code(
        wire::grpc_code_name(static_cast<grpc::StatusCode>(row.error_code)));
    out->mutable_error()->set_message(row.error_message);
  }
}
}  // namespace

JobManager::JobManager(Store* store, Options options, Runner runner)
    : store_(store), options_(options), runner_(std::move(runner)), rng_(std::random_device{}()) {}

JobManager::~JobManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    accepting_ = false;
    for (auto& kv : jobs_) kv.second->cancel = true;
  }
  work_cv_.notify_all();
  changed_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void JobManager::recover() {
  const int64_t keep = std::max<int64_t>(0, options_.keep_finished_in_memory);
  std::vector<JobRow> finished = store_->load_recent_finished_jobs(keep);
  std::map<JobState, int64_t> on_disk = store_->count_finished_jobs();
  std::vector<JobRow> rows = store_->load_unfinished_jobs();
  std::lock_guard<std::mutex> lock(mu_);
  // The most recently finished jobs, oldest first; the others stay in the database only.
  for (JobRow& row : finished) {
    auto job = std::make_shared<Job>();
    job->order = next_order_++;
    job->stage = "done";
    job->fraction = final_fraction(row);
    job->row = std::move(row);
    on_disk[job->row.state] -= 1;
    jobs_[job->row.id] = job;
    finished_in_memory_.push_back(job->row.id);
  }
  finished_on_disk_ = on_disk;
  for (JobRow& row : rows) {
    auto job = std::make_shared<Job>();
    job->order = next_order_++;
    bool persisted = true;
    if (row.state == JobState::kRunning) {
      // The server died while this job ran (kill -9, OOM, power). Run it again unless it has
      // already taken the server down max_attempts times: then it is probably the cause.
      if (row.attempts >= options_.max_attempts) {
        row.state = JobState::kFailed;
        row.finished_ms = now_unix_ms();
        row.error_code = static_cast<int>(grpc::StatusCode::ABORTED);
        row.error_message = "the server stopped while this job was running, " +
                            std::to_string(row.attempts) +
                            " times; not retried again (max attempts reached)";
      } else {
        row.state = JobState::kQueued;
      }
      persisted = persist(row, nullptr);
    }
    job->row = row;
    job->stage = row.state == JobState::kQueued ? "queued" : "done";
    job->fraction = is_terminal(row.state) ? final_fraction(row) : 0.0;
    jobs_[row.id] = job;
    if (row.state == JobState::kQueued) enqueue_locked(job);
    if (is_terminal(row.state) && persisted) retire_locked(job);
  }
}

void JobManager::start() {
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

std::string JobManager::new_id_locked() {
  static const char* hex = "0123456789abcdef";
  std::string id = "job-";
  uint64_t a = rng_(), b = rng_();
  for (int i = 0; i < 16; ++i) id.push_back(hex[(a >> (4 * i)) & 15]);
  for (int i = 0; i < 8; ++i) id.push_back(hex[(b >> (4 * i)) & 15]);
  return id;
}

void JobManager::enqueue_locked(const std::shared_ptr<Job>& job) {
  auto& q = queues_[job->row.user];
  q.insert(std::upper_bound(q.begin(), q.end(), job, runs_before), job);
  ++queued_count_;
  job->stage = "queued";
}

void JobManager::remove_from_queue_locked(const std::shared_ptr<Job>& job) {
  auto it = queues_.find(job->row.user);
  if (it == queues_.end()) return;
  auto& q = it->second;
  auto pos = std::find(q.begin(), q.end(), job);
  if (pos != q.end()) {
    q.erase(pos);
    --queued_count_;
  }
  if (q.empty()) queues_.erase(it);
}

// Round-robin over the users whose queue head has the highest priority, starting after the
// user served last. Pure function of (queues, last_served) so queue_positions can replay it.
namespace {
template <class Queues>
const std::string* choose_user(const Queues& queues, const std::string& last_served,
                               const std::map<std::string, size_t>* heads) {
  auto head = [&](const std::string& user, const auto& q) -> const std::shared_ptr<Job>* {
    size_t h = heads ? heads->at(user) : 0;
    return h < q.size() ? &q[h] : nullptr;
  };
  bool have = false;
  int best = 0;
  for (const auto& kv : queues) {
    const std::shared_ptr<Job>* j = head(kv.first, kv.second);
    if (j && (!have || (*j)->row.priority > best)) {
      best = (*j)->row.priority;
      have = true;
    }
  }
  if (!have) return nullptr;
  const std::string* first = nullptr;
  for (const auto& kv : queues) {
    const std::shared_ptr<Job>* j = head(kv.first, kv.second);
    if (!j || (*j)->row.priority != best) continue;
    if (first == nullptr) first = &kv.first;
    if (kv.first > last_served) return &kv.first;
  }
  return first;
}
}  // namespace

std::shared_ptr<Job> JobManager::pick_next_locked() {
  const std::string* user = choose_user(queues_, last_served_user_, nullptr);
  if (user == nullptr) return nullptr;
  last_served_user_ = *user;
  auto it = queues_.find(*user);
  std::shared_ptr<Job> job = it->second.front();
  it->second.erase(it->second.begin());
  --queued_count_;
  if (it->second.empty()) queues_.erase(it);
  return job;
}

std::map<std::string, int64_t> JobManager::queue_positions_locked() const {
  std::map<std::string, int64_t> pos;
  std::map<std::string, size_t> heads;
  for (const auto& kv : queues_) heads[kv.first] = 0;
  std::string last = last_served_user_;
  for (int64_t p = 0; p < queued_count_; ++p) {
    const std::string* user = choose_user(queues_, last, &heads);
    if (user == nullptr) break;
    last = *user;
    size_t& h = heads[*user];
    pos[queues_.at(*user)[h]->row.id] = p;
    ++h;
  }
  return pos;
}

std::string JobManager::submit(const std::string& user, const v1::AnalyzeRequest& request,
                               int priority, bool ephemeral) {
  auto job = std::make_shared<Job>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) {
      throw Error(ErrorCode::kUnavailable, "the server is shutting down; not accepting new work");
    }
    int64_t queued = 0;
    auto q = queues_.find(user);
    if (q != queues_.end()) queued = static_cast<int64_t>(q->second.size());
    if (queued >= options_.max_queued_jobs_per_user) {
      throw Error(ErrorCode::kResourceExhausted,
                  "quota max_queued_jobs_per_user exceeded: user '" + user + "' already has " +
                      std::to_string(queued) + " queued jobs (limit " +
                      std::to_string(options_.max_queued_jobs_per_user) + ")");
    }
    job->row.id = new_id_locked();
  }
  job->row.user = user;
  job->row.priority = priority;
  job->row.state = JobState::kQueued;
  job->row.created_ms = now_unix_ms();
  job->ephemeral = ephemeral;
  if (ephemeral) {
    job->request = std::make_shared<v1::AnalyzeRequest>(request);
  } else {
    std::string bytes;
    if (!request.SerializeToString(&bytes)) {
      throw Error(ErrorCode::kInternal, "cannot serialize the request for the job database");
    }
    // Persisted before it becomes visible to workers: a job that was acknowledged to the
    // client is in the database, so a crash right after SubmitJob returns cannot lose it.
    store_->insert_job(&job->row, bytes);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job->order = next_order_++;
    jobs_[job->row.id] = job;
    enqueue_locked(job);
  }
  work_cv_.notify_one();
  changed_cv_.notify_all();
  return job->row.id;
}

void JobManager::fill_locked(const Job& job, int64_t position, v1::Job* out) const {
  fill_job(job.row, job.stage, job.fraction, position, out, job.stage_detail);
}

bool JobManager::load_finished(const std::string& user, const std::string& id, v1::Job* out) {
  // Not in memory: either it finished and left (its final state was in the database before it
  // left, and never changes again), or there is no such job for this caller. A row that is not
  // final belongs to a SubmitJob still in progress, whose id nobody has been told yet.
  std::optional<JobRow> row = store_->load_job(id);
  if (!row || row->user != user || !is_terminal(row->state)) return false;
  fill_job(*row, "done", final_fraction(*row), -1, out);
  return true;
}

void JobManager::retire_locked(const std::shared_ptr<Job>& job) {
  finished_in_memory_.push_back(job->row.id);
  const size_t keep = static_cast<size_t>(std::max<int64_t>(0, options_.keep_finished_in_memory));
  while (finished_in_memory_.size() > keep) {
    auto it = jobs_.find(finished_in_memory_.front());
    finished_in_memory_.pop_front();
    if (it == jobs_.end() || !is_terminal(it->second->row.state)) continue;
    finished_on_disk_[it->second->row.state] += 1;
    jobs_.erase(it);
  }
}

bool JobManager::get(const std::string& user, const std::string& id, bool include_result,
                     v1::Job* out) {
  bool in_memory = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end()) {
      // Someone else's job is indistinguishable from a missing one (no probing for ids).
      if (it->second->row.user != user || it->second->ephemeral) return false;
      const Job& job = *it->second;
      int64_t pos = -1;
      if (job.row.state == JobState::kQueued) pos = queue_positions_locked()[id];
      fill_locked(job, pos, out);
      in_memory = true;
    }
  }
  if (!in_memory && !load_finished(user, id, out)) return false;
  if (include_result && out->state() == v1::JOB_STATE_SUCCEEDED) {
    std::optional<std::string> bytes = store_->load_result(id);
    if (!bytes || !out->mutable_result()->ParseFromString(*bytes)) {
      throw Error(ErrorCode::kInternal, "the stored result of " + id + " cannot be read");
    }
  }
  return true;
}

bool JobManager::cancel(const std::string& user, const std::string& id, v1::Job* out) {
  JobRow to_persist;
  bool persist_now = false;
  std::shared_ptr<Job> job_ptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end()) {
      if (it->second->row.user != user || it->second->ephemeral) return false;
      job_ptr = it->second;
      Job& job = *job_ptr;
      if (job.row.state == JobState::kQueued) {
        remove_from_queue_locked(job_ptr);
        job.row.state = JobState::kCancelled;
        job.row.finished_ms = now_unix_ms();
        job.row.error_code = static_cast<int>(grpc::StatusCode::CANCELLED);
        job.row.error_message = "cancelled by the user while queued";
        job.row.fraction = job.fraction;
        job.stage = "done";
        to_persist = job.row;
        persist_now = true;
      } else if (job.row.state == JobState::kRunning) {
        job.cancel_code = static_cast<int>(grpc::StatusCode::CANCELLED);
        job.cancel_reason = "cancelled by the user while running";
        job.cancel = true;
      }
      fill_locked(job, -1, out);
    }
  }
  // A finished job that left memory: cancelling it changes nothing, as for one in memory.
  if (!job_ptr) return load_finished(user, id, out);
  if (persist_now && persist(to_persist, nullptr)) {
    std::lock_guard<std::mutex> lock(mu_);
    retire_locked(job_ptr);
  }
  changed_cv_.notify_all();
  return true;
}

std::vector<v1::Job> JobManager::list(const std::string& user, const std::vector<int>& states,
                                      int limit) {
  if (limit <= 0) limit = 100;
  auto wanted = [&](JobState s) {
    return states.empty() ||
           std::find(states.begin(), states.end(), static_cast<int>(s)) != states.end();
  };
  // (seq, job): newest first is highest seq, in memory and in the database alike.
  std::vector<std::pair<int64_t, v1::Job>> picked;
  std::set<std::string> in_memory;  // the caller's jobs in memory: their state there wins
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, int64_t> pos;
    if (queued_count_ > 0) pos = queue_positions_locked();
    for (const auto& kv : jobs_) {
      const Job& j = *kv.second;
      if (j.row.user != user || j.ephemeral) continue;
      in_memory.insert(kv.first);
      if (!wanted(j.row.state)) continue;
      auto p = pos.find(kv.first);
      picked.emplace_back(j.row.seq, v1::Job());
      fill_locked(j, p == pos.end() ? -1 : p->second, &picked.back().second);
    }
  }
  // Finished jobs that left memory. A job not in memory above had either left already (its
  // final row is in the database) or was submitted since (skipped unless it already finished:
  // either way a true state). Enough rows to fill `limit` after skipping those in memory.
  for (const JobRow& row : store_->list_finished_jobs(
           user, states, static_cast<int64_t>(limit) + static_cast<int64_t>(in_memory.size()))) {
    if (in_memory.count(row.id) != 0) continue;
    picked.emplace_back(row.seq, v1::Job());
    fill_job(row, "done", final_fraction(row), -1, &picked.back().second);
  }
  std::sort(picked.begin(), picked.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  if (picked.size() > static_cast<size_t>(limit)) picked.resize(static_cast<size_t>(limit));
  std::vector<v1::Job> out;
  out.reserve(picked.size());
  for (auto& p : picked) out.push_back(std::move(p.second));
  return out;
}

bool JobManager::wait_for_change(const std::string& user, const std::string& id,
                                 const v1::Job& last, const std::function<bool()>& should_stop,
                                 v1::Job* out) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  while (true) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {
      // It finished and left memory while being watched: its final state is in the database.
      lock.unlock();
      return load_finished(user, id, out);
    }
    if (it->second->row.user != user || it->second->ephemeral) return false;
    const Job& job = *it->second;
    int64_t pos = -1;
    if (job.row.state == JobState::kQueued) pos = queue_positions_locked()[id];
    fill_locked(job, pos, out);
    const bool changed = out->state() != last.state() ||
                         out->queue_position() != last.queue_position() ||
                         out->stage() != last.stage() || out->fraction() != last.fraction() ||
                         out->stage_detail() != last.stage_detail();
    if (changed || is_terminal(job.row.state) || should_stop() ||
        std::chrono::steady_clock::now() >= until) {
      return true;
    }
    changed_cv_.wait_until(lock, until);
  }
}

v1::AnalyzeResponse JobManager::wait_ephemeral(
    const std::string& id, const std::function<bool()>& client_cancelled,
    std::chrono::system_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) throw Error(ErrorCode::kInternal, "analysis vanished from the queue");
  std::shared_ptr<Job> job = it->second;
  while (!is_terminal(job->row.state)) {
    ErrorCode stop_code = ErrorCode::kInternal;
    std::string stop_reason;
    if (std::chrono::system_clock::now() >= deadline) {
      stop_code = ErrorCode::kDeadlineExceeded;
      stop_reason = "the client's deadline passed before the analysis finished";
    } else if (client_cancelled()) {
      stop_code = ErrorCode::kCancelled;
      stop_reason = "the client cancelled the call";
    } else if (job->cancel && job->cancel_code == static_cast<int>(grpc::StatusCode::UNAVAILABLE)) {
      // A shutdown past its drain timeout: answer now, not when (if ever) the engine returns.
      stop_code = ErrorCode::kUnavailable;
      stop_reason = job->cancel_reason;
    }
    if (!stop_reason.empty()) {
      // Stop the work: out of the queue if it has not started, else at the next step.
      if (job->row.state == JobState::kQueued) {
        remove_from_queue_locked(job);
        jobs_.erase(job->row.id);
      } else {
        job->cancel_code = static_cast<int>(wire::to_grpc_code(stop_code));
        job->cancel_reason = stop_reason;
        job->cancel = true;
        job->abandoned = true;  // the worker drops it when the engine returns
      }
      throw Error(stop_code, stop_reason);
    }
    // Poll: neither a deadline nor a client disconnect notifies this condition variable.
    changed_cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  jobs_.erase(job->row.id);
  if (job->row.state == JobState::kSucceeded && job->result) return *job->result;
  throw Error(wire::from_grpc_code(static_cast<grpc::StatusCode>(job->row.error_code)),
              job->row.error_message);
}

void JobManager::close_stage_locked(Job& job) {
  if (job.stage == "queued" || job.stage == "done") return;
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - job.stage_started).count();
  stage_totals_.stage_seconds_sum[job.stage] += s;
  stage_totals_.stage_seconds_count[job.stage] += 1;
}

void JobManager::on_progress(const std::shared_ptr<Job>& job, Stage stage, double fraction) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string name = stage_name(stage);
    if (name != job->stage) {
      close_stage_locked(*job);
      job->stage = name;
      job->stage_started = std::chrono::steady_clock::now();
    }
    // The engine's fraction covers the whole request (all its checkpoints).
    job->fraction = std::min(1.0, std::max(0.0, fraction));
  }
  changed_cv_.notify_all();
}

void JobManager::on_detail(const std::shared_ptr<Job>& job, const std::string& detail) {
  // No notification: the engine reports its progress (which notifies) right after.
  std::lock_guard<std::mutex> lock(mu_);
  job->stage_detail = detail;
}

bool JobManager::persist(const JobRow& row, const std::string* result_bytes) {
  try {
    if (result_bytes) {
      store_->finish_job(row, *result_bytes);
    } else {
      store_->update_job(row);
    }
    return true;
  } catch (const std::exception& e) {
    // The in-memory state stays authoritative for this process; the failure is logged so an
    // operator sees a disk problem. A restart would re-run the job (it is still "running"
    // or "queued" in the database), so nothing accepted is lost.
    // Such a job also stays in memory (never retired): memory is its only up-to-date copy.
    log_error("cannot persist job " + row.id + ": " + e.what());
    return false;
  }
}

void JobManager::worker_loop() {
  while (true) {
    std::shared_ptr<Job> job;
    JobRow started_row;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || (accepting_ && queued_count_ > 0); });
      if (stopping_) return;
      job = pick_next_locked();
      if (!job) continue;
      job->row.state = JobState::kRunning;
      job->row.attempts += 1;
      job->row.started_ms = now_unix_ms();
      job->stage = "validate";
      job->stage_detail.clear();
      job->stage_started = std::chrono::steady_clock::now();
      job->fraction = 0;
      ++running_;
      started_row = job->row;
      // "running" + attempts is on disk before anyone can see the job running or the engine
      // starts (hence under the lock): a crash from here on counts against max_attempts.
      if (!job->ephemeral) persist(started_row, nullptr);
    }
    changed_cv_.notify_all();

    v1::AnalyzeResponse response;
    grpc::Status status;
    try {
      std::shared_ptr<v1::AnalyzeRequest> request = job->request;
      if (!request) {
        request = std::make_shared<v1::AnalyzeRequest>();
        if (!request->ParseFromString(store_->load_request(job->row.id))) {
          throw Error(ErrorCode::kInternal, "the stored request of " + job->row.id +
                                                " cannot be parsed");
        }
      }
      RunControl control;
      control.cancel = &job->cancel;
      // A batch of checkpoints is one engine run (analyze_checkpoints), whose progress
      // fraction already runs once from 0 to 1 over the whole batch.
      control.on_progress = [this, job](Stage stage, double fraction) { on_progress(job, stage, fraction); };
      control.on_detail = [this, job](const std::string& detail) { on_detail(job, detail); };
      response = runner_(job->row.user, *request, control);
    } catch (...) {
      status = wire::status_from_exception(std::current_exception());
    }

    // Decide the outcome on a copy of the row, persist it, and only then publish it: a client
    // that sees SUCCEEDED can always fetch the stored result, and a job reported finished is
    // finished on disk too.
    JobRow row;
    std::string result_bytes;
    bool requeue = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      row = job->row;
      if (status.ok()) {
        row.state = JobState::kSucceeded;
        if (!job->ephemeral && !response.SerializeToString(&result_bytes)) {
          row.state = JobState::kFailed;
          row.error_code = static_cast<int>(grpc::StatusCode::INTERNAL);
          row.error_message = "cannot serialize the result";
        }
      } else if (status.error_code() == grpc::StatusCode::CANCELLED && job->requeue_on_cancel) {
        // Interrupted by a graceful shutdown: back to the queue, and the interrupted run does
        // not count as an attempt.
        row.state = JobState::kQueued;
        row.attempts -= 1;
        row.started_ms = 0;
        requeue = true;
      } else if (status.error_code() == grpc::StatusCode::CANCELLED && job->cancel_code != 0) {
        row.state = JobState::kCancelled;
        row.error_code = job->cancel_code;
        row.error_message = job->cancel_reason;
      } else {
        row.state = status.error_code() == grpc::StatusCode::CANCELLED ? JobState::kCancelled
                                                                       : JobState::kFailed;
        row.error_code = static_cast<int>(status.error_code());
        row.error_message = status.error_message();
      }
      if (!requeue) {
        row.finished_ms = now_unix_ms();
        row.fraction = row.state == JobState::kSucceeded ? 1.0 : job->fraction;
      }
    }
    bool persisted = false;
    if (!job->ephemeral) {
      persisted = persist(row, row.state == JobState::kSucceeded ? &result_bytes : nullptr);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      close_stage_locked(*job);
      job->row = row;
      job->stage_detail.clear();  // a finished job reads the same from memory as from the database
      if (requeue) {
        job->requeue_on_cancel = false;
        job->cancel = false;
        job->cancel_code = 0;
        enqueue_locked(job);
      } else {
        job->stage = "done";
        job->fraction = row.fraction;
        if (row.state == JobState::kSucceeded && job->ephemeral) {
          job->result = std::make_shared<v1::AnalyzeResponse>(std::move(response));
        }
        if (!job->ephemeral && persisted) retire_locked(job);
      }
      if (job->ephemeral && job->abandoned) jobs_.erase(job->row.id);
      --running_;  // last: drain_and_stop waits for the persisted outcome
    }
    changed_cv_.notify_all();
  }
}

void JobManager::begin_shutdown() {
  accepting_ = false;
  std::vector<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Queued Analyze calls have a client waiting; tell them now rather than at the deadline.
    for (auto& kv : queues_) {
      for (auto& j : kv.second) {
        if (j->ephemeral) dropped.push_back(j);
      }
    }
    for (auto& j : dropped) {
      remove_from_queue_locked(j);
      j->row.state = JobState::kFailed;
      j->row.error_code = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
      j->row.error_message = "the server is shutting down";
    }
  }
  work_cv_.notify_all();
  changed_cv_.notify_all();
}

bool JobManager::drain_and_stop(std::chrono::milliseconds timeout, std::chrono::milliseconds grace) {
  begin_shutdown();
  std::unique_lock<std::mutex> lock(mu_);
  if (!changed_cv_.wait_for(lock, timeout, [&] { return running_ == 0; })) {
    for (auto& kv : jobs_) {
      Job& j = *kv.second;
      if (j.row.state != JobState::kRunning) continue;
      if (j.ephemeral) {
        j.cancel_code = static_cast<int>(grpc::StatusCode::UNAVAILABLE);
        j.cancel_reason = "the server is shutting down";
      } else {
        j.requeue_on_cancel = true;
      }
      j.cancel = true;
    }
    changed_cv_.notify_all();  // Analyze calls waiting on these jobs answer UNAVAILABLE now
    // The engine notices the flag at its next step boundary (between layers, blocks, stages).
    // A single library call can outlive this: then the workers are left running and the
    // caller exits without them (their jobs re-run at the next start).
    if (!changed_cv_.wait_for(lock, grace, [&] { return running_ == 0; })) return false;
  }
  stopping_ = true;
  lock.unlock();
  work_cv_.notify_all();
  changed_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  return true;
}

std::vector<std::string> JobManager::requeue_running_for_exit() {
  std::vector<std::string> running;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& kv : jobs_) {
    Job& j = *kv.second;
    if (j.row.state != JobState::kRunning) continue;
    running.push_back(j.row.id + " (user " + j.row.user + ", stage " + j.stage +
                      (j.ephemeral ? ", an Analyze call)" : ")"));
    if (j.ephemeral) continue;
    // As the worker would have written it, had the engine returned: queued, the interrupted
    // run not counted. A worker that finishes meanwhile cannot publish (the lock is held);
    // if its final write already landed this one wins and the job runs once more -- never lost.
    JobRow row = j.row;
    row.state = JobState::kQueued;
    row.attempts = std::max(0, row.attempts - 1);
    row.started_ms = 0;
    persist(row, nullptr);
  }
  return running;
}

QueueMetrics JobManager::metrics() {
  std::lock_guard<std::mutex> lock(mu_);
  QueueMetrics m = stage_totals_;
  m.queue_depth = queued_count_;
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                     JobState::kFailed, JobState::kCancelled}) {
    m.jobs_by_state[job_state_name(s)] = 0;
  }
  for (const auto& kv : jobs_) m.jobs_by_state[job_state_name(kv.second->row.state)] += 1;
  for (const auto& kv : finished_on_disk_) m.jobs_by_state[job_state_name(kv.first)] += kv.second;
  m.jobs_in_memory = static_cast<int64_t>(jobs_.size());
  return m;
}

int64_t JobManager::queue_length() {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_count_;
}

}  // namespace basin::server
