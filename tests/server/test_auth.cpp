// Bearer-token auth and per-user isolation of jobs and blobs.
#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

TEST(Auth, MissingWrongAndRightTokens) {
  TempDir dir;
  Basind server({"--tokens", write_tokens(dir)});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::GetServerInfoResponse info;
  {
    auto ctx = context();  // no token
    grpc::Status st = stub->GetServerInfo(ctx.get(), {}, &info);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto ctx = context("tok-mallory");
    grpc::Status st = stub->GetServerInfo(ctx.get(), {}, &info);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", "Basic dG9rLWFsaWNl");
    grpc::Status st = stub->GetServerInfo(ctx.get(), {}, &info);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    v1::AnalyzeResponse resp;
    auto ctx = context();
    grpc::Status st =
        stub->Analyze(ctx.get(), to_proto(make_problem(4, 2, 3, 1, Loss::kMse, 1)), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto ctx = context("tok-alice");
    grpc::Status st = stub->GetServerInfo(ctx.get(), {}, &info);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(info.user(), "alice");
  }
  {
    v1::AnalyzeResponse resp;
    auto ctx = context("tok-bob");
    grpc::Status st =
        stub->Analyze(ctx.get(), to_proto(make_problem(4, 2, 3, 1, Loss::kMse, 1)), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
}

TEST(Auth, UsersCannotSeeOrCancelEachOthersJobsOrBlobs) {
  TempDir dir;
  Basind server({"--tokens", write_tokens(dir)});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();

  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = slow_request(200);
  v1::SubmitJobResponse sresp;
  {
    auto ctx = context("tok-alice");
    ASSERT_TRUE(stub->SubmitJob(ctx.get(), sreq, &sresp).ok());
  }
  const std::string id = sresp.job_id();
  v1::Job job;
  v1::GetJobRequest get;
  get.set_job_id(id);
  {
    auto ctx = context("tok-bob");
    EXPECT_EQ(stub->GetJob(ctx.get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::CancelJobRequest c;
    c.set_job_id(id);
    auto ctx = context("tok-bob");
    EXPECT_EQ(stub->CancelJob(ctx.get(), c, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::WatchJobRequest w;
    w.set_job_id(id);
    auto ctx = context("tok-bob");
    auto reader = stub->WatchJob(ctx.get(), w);
    EXPECT_FALSE(reader->Read(&job));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::ListJobsResponse list;
    auto ctx = context("tok-bob");
    ASSERT_TRUE(stub->ListJobs(ctx.get(), {}, &list).ok());
    EXPECT_EQ(list.jobs_size(), 0);
  }
  {
    v1::ListJobsResponse list;
    auto ctx = context("tok-alice");
    ASSERT_TRUE(stub->ListJobs(ctx.get(), {}, &list).ok());
    ASSERT_EQ(list.jobs_size(), 1);
    EXPECT_EQ(list.jobs(0).id(), id);
  }
  // Alice's job was untouched by Bob's cancel and finishes.
  EXPECT_EQ(wait_final(stub.get(), id, "tok-alice").state(), v1::JOB_STATE_SUCCEEDED);

  // Blobs: Alice uploads inputs; Bob cannot refer to them by id.
  const AnalysisRequest p = make_problem(5, 2, 3, 1, Loss::kMse, 4);
  const std::string npy = npy_f64({5, 2}, p.inputs);
  v1::UploadBlobResponse up;
  {
    auto ctx = context("tok-alice");
    auto writer = stub->UploadBlob(ctx.get(), &up);
    v1::UploadBlobRequest chunk;
    chunk.set_chunk(npy);
    ASSERT_TRUE(writer->Write(chunk));
    ASSERT_TRUE(writer->WritesDone());
    ASSERT_TRUE(writer->Finish().ok());
  }
  v1::AnalyzeRequest req = to_proto(p);
  req.mutable_inputs()->set_blob_id(up.blob_id());
  {
    v1::AnalyzeResponse resp;
    auto ctx = context("tok-alice");
    grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  {
    v1::AnalyzeResponse resp;
    auto ctx = context("tok-bob");
    grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
    // Exactly what a blob nobody uploaded gets: NOT_FOUND naming the field.
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    EXPECT_NE(st.error_message().find("inputs.blob_id: unknown blob"), std::string::npos)
        << st.error_message();
  }
  {
    v1::SubmitJobRequest sreq;
    *sreq.mutable_request() = req;
    v1::SubmitJobResponse sresp;
    auto ctx = context("tok-bob");
    grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    EXPECT_NE(st.error_message().find("request.inputs.blob_id: unknown blob"), std::string::npos)
        << st.error_message();
  }
  // Bob uploading the same bytes gets the same id, is not told that Alice has them, and may
  // then use them.
  v1::UploadBlobResponse bob_up;
  {
    auto ctx = context("tok-bob");
    auto writer = stub->UploadBlob(ctx.get(), &bob_up);
    v1::UploadBlobRequest chunk;
    chunk.set_chunk(npy);
    ASSERT_TRUE(writer->Write(chunk));
    ASSERT_TRUE(writer->WritesDone());
    ASSERT_TRUE(writer->Finish().ok());
  }
  EXPECT_EQ(bob_up.blob_id(), up.blob_id());
  EXPECT_FALSE(bob_up.deduplicated());
  {
    v1::AnalyzeResponse resp;
    auto ctx = context("tok-bob");
    grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
}

}  // namespace
}  // namespace basin::test
