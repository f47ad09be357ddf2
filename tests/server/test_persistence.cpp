// Restarts: kill -9 and graceful SIGTERM. Nothing the server accepted is lost silently.
#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

std::string submit(v1::Basin::Stub* stub, const v1::AnalyzeRequest& req) {
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = req;
  v1::SubmitJobResponse sresp;
  auto ctx = context();
  grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return sresp.job_id();
}

v1::Job get(v1::Basin::Stub* stub, const std::string& id, bool result = false) {
  v1::GetJobRequest req;
  req.set_job_id(id);
  req.set_include_result(result);
  v1::Job job;
  auto ctx = context();
  grpc::Status st = stub->GetJob(ctx.get(), req, &job);
  EXPECT_TRUE(st.ok()) << id << ": " << st.error_message();
  return job;
}

void wait_running(v1::Basin::Stub* stub, const std::string& id) {
  for (int i = 0; i < 500 && get(stub, id).state() != v1::JOB_STATE_RUNNING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(get(stub, id).state(), v1::JOB_STATE_RUNNING);
}

TEST(Persistence, KillNineKeepsFinishedRunsQueuedAndReRunsRunning) {
  TempDir data;
  const AnalysisRequest small = make_problem(10, 3, 5, 2, Loss::kMse, 41);
  std::string finished, running, queued1, queued2;
  {
    Basind server({"--data-dir", data.path()});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    finished = submit(stub.get(), to_proto(small));
    ASSERT_EQ(wait_final(stub.get(), finished).state(), v1::JOB_STATE_SUCCEEDED);
    // Long enough (~1 ms per checkpoint here) that it is still running at the kill.
    running = submit(stub.get(), slow_request(1500));
    wait_running(stub.get(), running);
    queued1 = submit(stub.get(), to_proto(make_problem(7, 2, 3, 1, Loss::kMse, 42)));
    queued2 = submit(stub.get(), to_proto(make_problem(8, 2, 4, 2, Loss::kMse, 43)));
    server.kill9();
  }
  Basind server({"--data-dir", data.path()});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::Job f = get(stub.get(), finished, true);
  ASSERT_EQ(f.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(f.result().results_size(), 1);
  expect_same_result(analyze(small), wire::result_from_proto(f.result().results(0)));

  v1::Job r = wait_final(stub.get(), running);
  EXPECT_EQ(r.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(r.attempts(), 2) << "interrupted by the crash, then run again";
  EXPECT_EQ(r.result().results_size(), 1500);
  for (const std::string& id : {queued1, queued2}) {
    v1::Job q = wait_final(stub.get(), id);
    EXPECT_EQ(q.state(), v1::JOB_STATE_SUCCEEDED);
    EXPECT_EQ(q.attempts(), 1);
  }
  v1::ListJobsResponse list;
  auto ctx = context();
  ASSERT_TRUE(stub->ListJobs(ctx.get(), {}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 4);
}

TEST(Persistence, JobThatKeepsCrashingTheServerIsMarkedFailed) {
  TempDir data;
  std::string running;
  {
    Basind server({"--data-dir", data.path(), "--max-attempts", "1"});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    running = submit(stub.get(), slow_request());
    wait_running(stub.get(), running);
    server.kill9();
  }
  Basind server({"--data-dir", data.path(), "--max-attempts", "1"});
  ASSERT_TRUE(server.started());
  v1::Job r = get(server.stub().get(), running);
  EXPECT_EQ(r.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r.error().code(), "ABORTED");
  EXPECT_NE(r.error().message().find("max attempts"), std::string::npos) << r.error().message();
}

TEST(Persistence, SigtermRefusesNewWorkAndRequeuesRunningJobs) {
  TempDir data;
  std::string running, queued;
  {
    Basind server({"--data-dir", data.path(), "--shutdown-timeout", "1"});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    // Several times longer than the shutdown timeout, even on a fast machine.
    running = submit(stub.get(), slow_request(8000));
    wait_running(stub.get(), running);
    queued = submit(stub.get(), slow_request(10));
    ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Draining: health says NOT_SERVING and new work is UNAVAILABLE.
    grpc::health::v1::HealthCheckResponse h;
    auto hctx = context();
    ASSERT_TRUE(server.health()->Check(hctx.get(), {}, &h).ok());
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    v1::SubmitJobRequest sreq;
    *sreq.mutable_request() = slow_request(10);
    v1::SubmitJobResponse sresp;
    auto ctx = context();
    EXPECT_EQ(stub->SubmitJob(ctx.get(), sreq, &sresp).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(server.terminate(), 0) << server.log();
  }
  Basind server({"--data-dir", data.path()});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  // The interrupted job is back (queued or already running again), its interrupted run not
  // counted as an attempt; the queued one is still queued behind it.
  v1::Job r = get(stub.get(), running);
  EXPECT_TRUE(r.state() == v1::JOB_STATE_QUEUED || r.state() == v1::JOB_STATE_RUNNING)
      << r.DebugString();
  EXPECT_LE(r.attempts(), 1);
  EXPECT_EQ(get(stub.get(), queued).state(), v1::JOB_STATE_QUEUED);
  for (const std::string& id : {running, queued}) {
    v1::CancelJobRequest c;
    c.set_job_id(id);
    v1::Job j;
    auto ctx = context();
    EXPECT_TRUE(stub->CancelJob(ctx.get(), c, &j).ok());
  }
}

}  // namespace
}  // namespace basin::test
