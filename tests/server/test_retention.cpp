// Finished jobs leave the server's memory (--keep-finished-in-memory) once they are in SQLite,
// and are then served from the database: the client sees exactly the same Job messages.
#include <google/protobuf/util/message_differencer.h>

#include <sys/wait.h>

#include <cstdio>
#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string submit(v1::Basin::Stub* stub, const v1::AnalyzeRequest& req,
                   const std::string& token = "") {
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = req;
  v1::SubmitJobResponse sresp;
  auto ctx = context(token);
  grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return sresp.job_id();
}

grpc::Status get(v1::Basin::Stub* stub, const std::string& id, const std::string& token,
                 bool result, v1::Job* out) {
  v1::GetJobRequest req;
  req.set_job_id(id);
  req.set_include_result(result);
  auto ctx = context(token);
  return stub->GetJob(ctx.get(), req, out);
}

v1::Job get_ok(v1::Basin::Stub* stub, const std::string& id, const std::string& token,
               bool result) {
  v1::Job job;
  grpc::Status st = get(stub, id, token, result, &job);
  EXPECT_TRUE(st.ok()) << id << ": " << st.error_message();
  return job;
}

v1::Job cancel(v1::Basin::Stub* stub, const std::string& id, const std::string& token,
               grpc::Status* status = nullptr) {
  v1::CancelJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  auto ctx = context(token);
  grpc::Status st = stub->CancelJob(ctx.get(), req, &job);
  if (status != nullptr) {
    *status = st;
  } else {
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  return job;
}

// Every message of a WatchJob stream, and its final status.
std::vector<v1::Job> watch(v1::Basin::Stub* stub, const std::string& id, const std::string& token,
                           grpc::Status* status) {
  v1::WatchJobRequest w;
  w.set_job_id(id);
  auto ctx = context(token);
  auto reader = stub->WatchJob(ctx.get(), w);
  std::vector<v1::Job> out;
  v1::Job j;
  while (reader->Read(&j)) out.push_back(j);
  *status = reader->Finish();
  return out;
}

std::vector<v1::Job> list(v1::Basin::Stub* stub, const std::string& token,
                          std::vector<v1::JobState> states = {}, int limit = 0) {
  v1::ListJobsRequest req;
  for (v1::JobState s : states) req.add_states(s);
  req.set_limit(limit);
  v1::ListJobsResponse resp;
  auto ctx = context(token);
  grpc::Status st = stub->ListJobs(ctx.get(), req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return {resp.jobs().begin(), resp.jobs().end()};
}

v1::Job without_result(v1::Job j) {
  j.clear_result();
  return j;
}

// Waits until the job runs and has reported some progress, so that a cancel leaves a
// fraction strictly between 0 and 1 (which must survive the trip through the database).
void wait_progress(v1::Basin::Stub* stub, const std::string& id, const std::string& token) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    const v1::Job j = get_ok(stub, id, token, false);
    if (j.state() == v1::JOB_STATE_RUNNING && j.fraction() > 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "job " << id << " reported no progress";
}

double metric(const Basind& server, const std::string& series) {
  return metric_value(http_get_metrics(server.metrics_port()), series);
}

#define EXPECT_SAME_JOB(a, b)                                                                  \
  EXPECT_TRUE(MessageDifferencer::Equals((a), (b)))                                           \
      << "expected\n" << (a).DebugString() << "got\n" << (b).DebugString()

TEST(Retention, FinishedJobsLeaveMemoryAndAreServedFromTheDatabase) {
  TempDir dir;
  Basind server({"--tokens", write_tokens(dir), "--keep-finished-in-memory", "2",
                 "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string alice = "tok-alice", bob = "tok-bob";

  // Each job's Job message as seen right after it finished, while it was still in memory (it
  // is then the most recently finished one, and the cap is 2), result included.
  std::vector<std::string> ids;
  std::vector<v1::Job> seen;

  // A job cancelled while running (its fraction, error code and message must survive) and one
  // cancelled while queued behind it.
  const std::string running = submit(stub.get(), slow_request(4000, 9), alice);
  wait_progress(stub.get(), running, alice);
  const std::string queued = submit(stub.get(), slow_request(10, 10), alice);
  ASSERT_EQ(cancel(stub.get(), queued, alice).state(), v1::JOB_STATE_CANCELLED);
  ids.push_back(running);
  ids.push_back(queued);
  cancel(stub.get(), running, alice);
  const v1::Job r = wait_final(stub.get(), running, alice);
  ASSERT_EQ(r.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_GT(r.fraction(), 0.0);
  EXPECT_LT(r.fraction(), 1.0);
  seen.push_back(r);
  seen.push_back(get_ok(stub.get(), queued, alice, true));
  EXPECT_EQ(seen.back().state(), v1::JOB_STATE_CANCELLED);

  // Then six that succeed, one after the other: more than the cap.
  std::vector<AnalysisRequest> problems;
  for (int i = 0; i < 6; ++i) {
    problems.push_back(make_problem(8 + i, 3, 5, 2, Loss::kMse, 100 + i));
    ids.push_back(submit(stub.get(), to_proto(problems.back()), alice));
    seen.push_back(wait_final(stub.get(), ids.back(), alice));
    ASSERT_EQ(seen.back().state(), v1::JOB_STATE_SUCCEEDED);
    ASSERT_EQ(seen.back().result().results_size(), 1);
  }

  // (b) Memory holds the cap, not every job; the counts still cover every job.
  const std::string text = http_get_metrics(server.metrics_port());
  EXPECT_EQ(metric_value(text, "basin_jobs_in_memory"), 2) << text;
  EXPECT_EQ(metric_value(text, "basin_jobs{state=\"succeeded\"}"), 6) << text;
  EXPECT_EQ(metric_value(text, "basin_jobs{state=\"cancelled\"}"), 2) << text;
  EXPECT_EQ(metric_value(text, "basin_queue_depth"), 0) << text;

  // (a) Every job reads exactly as it did in memory, results equal to the local engine.
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE("job " + std::to_string(i) + " " + ids[i]);
    const v1::Job now = get_ok(stub.get(), ids[i], alice, true);
    EXPECT_SAME_JOB(seen[i], now);
    EXPECT_SAME_JOB(without_result(seen[i]), get_ok(stub.get(), ids[i], alice, false));
    if (i >= 2) {
      ASSERT_EQ(now.result().results_size(), 1);
      expect_same_result(analyze(problems[i - 2]), wire::result_from_proto(now.result().results(0)));
    }
  }

  // ListJobs: all of them, newest first, the same messages (without results); filters and
  // limits work across the memory / database boundary.
  const std::vector<v1::Job> all = list(stub.get(), alice);
  ASSERT_EQ(all.size(), ids.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_SAME_JOB(without_result(seen[ids.size() - 1 - i]), all[i]);
  }
  const std::vector<v1::Job> newest3 = list(stub.get(), alice, {}, 3);
  ASSERT_EQ(newest3.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(newest3[i].id(), ids[ids.size() - 1 - i]);
  const std::vector<v1::Job> cancelled = list(stub.get(), alice, {v1::JOB_STATE_CANCELLED});
  ASSERT_EQ(cancelled.size(), 2u);
  EXPECT_EQ(cancelled[0].id(), queued);
  EXPECT_EQ(cancelled[1].id(), running);
  const std::vector<v1::Job> succeeded4 = list(stub.get(), alice, {v1::JOB_STATE_SUCCEEDED}, 4);
  ASSERT_EQ(succeeded4.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(succeeded4[i].id(), ids[ids.size() - 1 - i]);
  EXPECT_TRUE(list(stub.get(), alice, {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING}).empty());

  // WatchJob of a finished job that left memory: its final state at once, then the end.
  for (size_t i : {size_t{0}, size_t{2}}) {
    grpc::Status st;
    const std::vector<v1::Job> updates = watch(stub.get(), ids[i], alice, &st);
    EXPECT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(updates.size(), 1u);
    EXPECT_SAME_JOB(without_result(seen[i]), updates[0]);
  }
  // CancelJob of one: nothing changes, as for a finished job in memory.
  {
    grpc::Status st;
    const v1::Job c = cancel(stub.get(), ids[2], alice, &st);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_SAME_JOB(without_result(seen[2]), c);
    EXPECT_SAME_JOB(seen[2], get_ok(stub.get(), ids[2], alice, true));
  }

  // (c) Isolation: Alice's evicted jobs do not exist for Bob, whichever RPC he tries.
  for (const std::string& id : {ids[0], ids[2], ids.back()}) {
    SCOPED_TRACE(id);
    v1::Job j;
    grpc::Status st = get(stub.get(), id, bob, true, &j);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(st.error_message(), "job_id: no job '" + id + "'");
    EXPECT_FALSE(j.has_result());
    std::vector<v1::Job> updates = watch(stub.get(), id, bob, &st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(updates.empty());
    cancel(stub.get(), id, bob, &st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_TRUE(list(stub.get(), bob).empty());
  // ... and Bob's own finished jobs leave memory without showing up for Alice.
  const AnalysisRequest bobs = make_problem(6, 3, 5, 2, Loss::kMse, 200);
  const std::string b1 = submit(stub.get(), to_proto(bobs), bob);
  ASSERT_EQ(wait_final(stub.get(), b1, bob).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string b2 = submit(stub.get(), to_proto(bobs), bob);
  ASSERT_EQ(wait_final(stub.get(), b2, bob).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string b3 = submit(stub.get(), to_proto(bobs), bob);
  ASSERT_EQ(wait_final(stub.get(), b3, bob).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(metric(server, "basin_jobs_in_memory"), 2);
  EXPECT_EQ(list(stub.get(), bob).size(), 3u);
  EXPECT_EQ(list(stub.get(), alice).size(), ids.size());
  v1::Job j;
  EXPECT_EQ(get(stub.get(), b1, alice, false, &j).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get_ok(stub.get(), b1, bob, true).state(), v1::JOB_STATE_SUCCEEDED);
}

// With nothing kept, a job leaves memory the moment its final state is committed, even while
// a client watches it: the watcher still gets the final state as the last message. Analyze
// calls, however they end, leave memory too.
TEST(Retention, KeepZeroWatchersAndAnalyzeCallsLeaveNothingBehind) {
  Basind server({"--keep-finished-in-memory", "0", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();

  const AnalysisRequest problem = make_problem(30, 4, 12, 2, Loss::kMse, 21);
  const std::string id = submit(stub.get(), slow_request(300, 11));
  grpc::Status st;
  const std::vector<v1::Job> updates = watch(stub.get(), id, "", &st);
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(updates.back().fraction(), 1.0);
  EXPECT_EQ(updates.back().stage(), "done");
  const v1::Job done = get_ok(stub.get(), id, "", true);
  EXPECT_SAME_JOB(updates.back(), without_result(done));
  EXPECT_EQ(done.result().results_size(), 300);
  EXPECT_EQ(metric(server, "basin_jobs_in_memory"), 0);

  const std::string small = submit(stub.get(), to_proto(problem));
  const v1::Job small_done = wait_final(stub.get(), small);
  ASSERT_EQ(small_done.state(), v1::JOB_STATE_SUCCEEDED);
  expect_same_result(analyze(problem), wire::result_from_proto(small_done.result().results(0)));

  // Analyze: successes, a validation failure, a deadline that passes mid-run and a client
  // that cancels.
  for (int i = 0; i < 3; ++i) {
    v1::AnalyzeResponse resp;
    auto ctx = context("", 30);
    grpc::Status a = stub->Analyze(ctx.get(), to_proto(problem), &resp);
    EXPECT_TRUE(a.ok()) << a.error_message();
  }
  {
    v1::AnalyzeRequest bad = to_proto(problem);
    bad.mutable_inputs()->set_blob_id("sha256:" + std::string(64, 'd'));
    v1::AnalyzeResponse resp;
    auto ctx = context();
    EXPECT_EQ(stub->Analyze(ctx.get(), bad, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::AnalyzeResponse resp;
    auto ctx = context("", 0.3);
    EXPECT_EQ(stub->Analyze(ctx.get(), slow_request(), &resp).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    auto ctx = context("", 60);
    std::thread canceller([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ctx->TryCancel();
    });
    v1::AnalyzeResponse resp;
    grpc::Status c = stub->Analyze(ctx.get(), slow_request(), &resp);
    canceller.join();
    EXPECT_EQ(c.error_code(), grpc::StatusCode::CANCELLED);
  }
  // An abandoned run leaves when the engine stops at its next step: shortly.
  double in_memory = -1;
  for (int i = 0; i < 250 && in_memory != 0; ++i) {
    in_memory = metric(server, "basin_jobs_in_memory");
    if (in_memory != 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(in_memory, 0);
  EXPECT_EQ(metric(server, "basin_jobs{state=\"succeeded\"}"), 2);
  EXPECT_EQ(list(stub.get(), "").size(), 2u);
}

// A restart loads the unfinished jobs and only the most recently finished ones; the rest are
// read from the database on demand, unchanged.
TEST(Retention, RestartLoadsOnlyTheMostRecentFinishedJobs) {
  TempDir data;
  std::vector<std::string> ids;
  std::vector<v1::Job> seen;
  {
    Basind server({"--data-dir", data.path()});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    for (int i = 0; i < 4; ++i) {
      ids.push_back(submit(stub.get(), to_proto(make_problem(7 + i, 2, 4, 2, Loss::kMse, 60 + i))));
      seen.push_back(wait_final(stub.get(), ids.back()));
      ASSERT_EQ(seen.back().state(), v1::JOB_STATE_SUCCEEDED);
    }
    // A cancelled one with progress, last.
    ids.push_back(submit(stub.get(), slow_request(4000, 12)));
    wait_progress(stub.get(), ids.back(), "");
    cancel(stub.get(), ids.back(), "");
    seen.push_back(wait_final(stub.get(), ids.back()));
    ASSERT_EQ(seen.back().state(), v1::JOB_STATE_CANCELLED);
    EXPECT_EQ(server.terminate(), 0) << server.log();
  }
  Basind server({"--data-dir", data.path(), "--keep-finished-in-memory", "1",
                 "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string text = http_get_metrics(server.metrics_port());
  EXPECT_EQ(metric_value(text, "basin_jobs_in_memory"), 1) << text;
  EXPECT_EQ(metric_value(text, "basin_jobs{state=\"succeeded\"}"), 4) << text;
  EXPECT_EQ(metric_value(text, "basin_jobs{state=\"cancelled\"}"), 1) << text;
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]);
    EXPECT_SAME_JOB(seen[i], get_ok(stub.get(), ids[i], "", true));
  }
  const std::vector<v1::Job> all = list(stub.get(), "");
  ASSERT_EQ(all.size(), ids.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_SAME_JOB(without_result(seen[ids.size() - 1 - i]), all[i]);
  }
  // New work after the restart is numbered after the old jobs: newest first still holds.
  const std::string fresh = submit(stub.get(), to_proto(make_problem(5, 2, 3, 1, Loss::kMse, 70)));
  ASSERT_EQ(wait_final(stub.get(), fresh).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(list(stub.get(), "", {}, 1).at(0).id(), fresh);
  EXPECT_EQ(metric(server, "basin_jobs_in_memory"), 1);
  EXPECT_EQ(metric(server, "basin_jobs{state=\"succeeded\"}"), 5);
}

// A bad --keep-finished-in-memory value stops basind at start-up with a message naming the flag
// and what it expects (no server runs with a cap it cannot honour).
TEST(Retention, BadKeepFinishedValueIsRefusedAtStartUp) {
  for (const char* value : {"-1", "many", ""}) {
    const std::string cmd = std::string(BASIND_PATH) + " --listen 127.0.0.1:0 --keep-finished-in-memory '" + value +
                            "' 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    ASSERT_TRUE(WIFEXITED(status)) << out;
    EXPECT_NE(WEXITSTATUS(status), 0) << "value '" << value << "' accepted: " << out;
    EXPECT_NE(out.find("--keep-finished-in-memory"), std::string::npos) << out;
    EXPECT_NE(out.find("integer >= 0"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace basin::test
