// Bugs found by fuzz/fuzz_request.cpp, each replayed against a real basind.
#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

// A float32 batch whose second checkpoint holds a value outside the float32 range used to pass
// decoding (only params[0] was validated), be queued, and fail only when the job ran. Both
// Analyze and SubmitJob must refuse it up front, naming params[1].
TEST(FuzzRegressions, EveryCheckpointIsValidatedAtSubmit) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  AnalysisRequest good = make_problem(4, 3, 4, 2, Loss::kMse, 5);
  good.dtype = DType::kFloat32;
  const int64_t N = good.model.num_params();
  std::vector<double> second = good.params;
  second[1] = 4e54;  // finite in float64, not representable in float32
  v1::AnalyzeRequest req = to_proto(good);
  std::vector<double> both = good.params;
  both.insert(both.end(), second.begin(), second.end());
  wire::doubles_to_tensor(both, {2, N}, req.mutable_params()->mutable_tensor());

  v1::AnalyzeResponse resp;
  auto ctx = context();
  grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("params[1]"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("float32 range"), std::string::npos) << st.error_message();

  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = req;
  v1::SubmitJobResponse sresp;
  auto sctx = context();
  grpc::Status sst = stub->SubmitJob(sctx.get(), sreq, &sresp);
  EXPECT_EQ(sst.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << sst.error_message();
  EXPECT_NE(sst.error_message().find("request.params[1]"), std::string::npos) << sst.error_message();
  EXPECT_TRUE(sresp.job_id().empty());

  // The same batch with both checkpoints in range is accepted and gives two results.
  wire::doubles_to_tensor([&] {
    std::vector<double> ok = good.params;
    ok.insert(ok.end(), good.params.begin(), good.params.end());
    return ok;
  }(), {2, N}, req.mutable_params()->mutable_tensor());
  v1::AnalyzeResponse ok_resp;
  auto ok_ctx = context();
  grpc::Status ok_st = stub->Analyze(ok_ctx.get(), req, &ok_resp);
  ASSERT_TRUE(ok_st.ok()) << ok_st.error_message();
  EXPECT_EQ(ok_resp.results_size(), 2);
}

}  // namespace
}  // namespace basin::test
