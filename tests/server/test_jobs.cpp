// Jobs: submit/watch/result, cancel (queued and running), deadlines, quotas, fair order.
#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

std::string submit(v1::Basin::Stub* stub, const v1::AnalyzeRequest& req,
                   const std::string& token = "", int priority = 0) {
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = req;
  sreq.set_priority(priority);
  v1::SubmitJobResponse sresp;
  auto ctx = context(token);
  grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return sresp.job_id();
}

v1::Job get(v1::Basin::Stub* stub, const std::string& id, const std::string& token = "") {
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  auto ctx = context(token);
  EXPECT_TRUE(stub->GetJob(ctx.get(), req, &job).ok());
  return job;
}

void wait_running(v1::Basin::Stub* stub, const std::string& id, const std::string& token = "") {
  for (int i = 0; i < 500; ++i) {
    if (get(stub, id, token).state() == v1::JOB_STATE_RUNNING) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "job " << id << " never started";
}

v1::Job cancel(v1::Basin::Stub* stub, const std::string& id, const std::string& token = "") {
  v1::CancelJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  auto ctx = context(token);
  EXPECT_TRUE(stub->CancelJob(ctx.get(), req, &job).ok());
  return job;
}

TEST(Jobs, SubmitWatchAndResultEqualLocalEngine) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const AnalysisRequest problem = make_problem(30, 4, 12, 2, Loss::kMse, 21);
  const std::string id = submit(stub.get(), to_proto(problem));
  ASSERT_FALSE(id.empty());

  const std::vector<v1::Job> updates = watch_all(stub.get(), id);
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(updates.back().fraction(), 1.0);
  for (size_t i = 1; i < updates.size(); ++i) {
    EXPECT_GE(updates[i].state(), updates[i - 1].state()) << "states only move forward";
  }

  v1::Job done = wait_final(stub.get(), id);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(done.result().results_size(), 1);
  EXPECT_EQ(done.attempts(), 1);
  expect_same_result(analyze(problem), wire::result_from_proto(done.result().results(0)));
}

TEST(Jobs, CancelQueuedAndRunningJobs) {
  Basind server;  // one worker
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string running = submit(stub.get(), slow_request());
  const std::string queued = submit(stub.get(), slow_request(100, 8));
  wait_running(stub.get(), running);
  EXPECT_EQ(get(stub.get(), queued).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(get(stub.get(), queued).queue_position(), 0);

  // A watcher of the queued job sees its queue position, then the cancellation as the last
  // message of the stream.
  v1::WatchJobRequest w;
  w.set_job_id(queued);
  auto wctx = context();
  auto watch = stub->WatchJob(wctx.get(), w);
  v1::Job first;
  ASSERT_TRUE(watch->Read(&first));
  EXPECT_EQ(first.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(first.queue_position(), 0);

  v1::Job q = cancel(stub.get(), queued);
  EXPECT_EQ(q.state(), v1::JOB_STATE_CANCELLED);
  v1::Job last = first;
  while (watch->Read(&last)) {
  }
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_EQ(last.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(last.queue_position(), -1);

  const auto t0 = std::chrono::steady_clock::now();
  cancel(stub.get(), running);
  v1::Job r = wait_final(stub.get(), running, "", std::chrono::seconds(10));
  EXPECT_EQ(r.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(r.error().code(), "CANCELLED");
  EXPECT_NE(r.error().message().find("cancelled"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  // A cancelled job never ran again, and the cancelled queued one never started.
  EXPECT_EQ(get(stub.get(), queued).started_unix_ms(), 0);
}

TEST(Jobs, AnalyzeDeadlineShorterThanTheJob) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::AnalyzeResponse resp;
  auto ctx = context("", 0.3);
  grpc::Status st = stub->Analyze(ctx.get(), slow_request(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server stopped the work: the single worker is free again for a small request.
  auto ctx2 = context("", 10);
  grpc::Status st2 =
      stub->Analyze(ctx2.get(), to_proto(make_problem(5, 2, 3, 1, Loss::kMse, 3)), &resp);
  EXPECT_TRUE(st2.ok()) << st2.error_message();
}

TEST(Jobs, ClientCancellingAnalyzeStopsTheWork) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  auto ctx = context("", 60);
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ctx->TryCancel();
  });
  v1::AnalyzeResponse resp;
  grpc::Status st = stub->Analyze(ctx.get(), slow_request(), &resp);
  canceller.join();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  auto ctx2 = context("", 10);
  grpc::Status st2 =
      stub->Analyze(ctx2.get(), to_proto(make_problem(5, 2, 3, 1, Loss::kMse, 3)), &resp);
  EXPECT_TRUE(st2.ok()) << st2.error_message();
}

TEST(Jobs, QueuedJobQuotaIsResourceExhausted) {
  Basind server({"--max-queued-jobs", "2"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string running = submit(stub.get(), slow_request());
  wait_running(stub.get(), running);
  const std::string a = submit(stub.get(), slow_request(10));
  const std::string b = submit(stub.get(), slow_request(10));
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = slow_request(10);
  v1::SubmitJobResponse sresp;
  auto ctx = context();
  grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("max_queued_jobs_per_user"), std::string::npos)
      << st.error_message();
  for (const std::string& id : {running, a, b}) cancel(stub.get(), id);
}

TEST(Jobs, RoundRobinAcrossUsersFifoWithinAUserAndPriority) {
  TempDir dir;
  Basind server({"--tokens", write_tokens(dir)});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string blocker = submit(stub.get(), slow_request(), "tok-alice");
  wait_running(stub.get(), blocker, "tok-alice");
  const std::string a1 = submit(stub.get(), slow_request(5), "tok-alice");
  const std::string a2 = submit(stub.get(), slow_request(5), "tok-alice");
  const std::string a3 = submit(stub.get(), slow_request(5), "tok-alice");
  const std::string b1 = submit(stub.get(), slow_request(5), "tok-bob");
  const std::string b2 = submit(stub.get(), slow_request(5), "tok-bob");
  // Alice was served last (the blocker), so Bob goes next; then they alternate.
  EXPECT_EQ(get(stub.get(), b1, "tok-bob").queue_position(), 0);
  EXPECT_EQ(get(stub.get(), a1, "tok-alice").queue_position(), 1);
  EXPECT_EQ(get(stub.get(), b2, "tok-bob").queue_position(), 2);
  EXPECT_EQ(get(stub.get(), a2, "tok-alice").queue_position(), 3);
  EXPECT_EQ(get(stub.get(), a3, "tok-alice").queue_position(), 4);
  // A higher priority jumps ahead of every equal-priority head.
  const std::string urgent = submit(stub.get(), slow_request(5), "tok-alice", 10);
  EXPECT_EQ(get(stub.get(), urgent, "tok-alice").queue_position(), 0);
  EXPECT_EQ(get(stub.get(), b1, "tok-bob").queue_position(), 1);
  for (const std::string& id : {blocker, a1, a2, a3, urgent}) cancel(stub.get(), id, "tok-alice");
  for (const std::string& id : {b1, b2}) cancel(stub.get(), id, "tok-bob");
}

}  // namespace
}  // namespace basin::test
