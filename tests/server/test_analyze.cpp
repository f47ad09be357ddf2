// Analyze over the wire gives exactly what the engine gives in-process.
#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

void check_matches_local(const AnalysisRequest& request) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::AnalyzeResponse resp;
  auto ctx = context();
  grpc::Status st = stub->Analyze(ctx.get(), to_proto(request), &resp);
  ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  ASSERT_EQ(resp.results_size(), 1);
  const AnalysisResult expected = analyze(request);
  expect_same_result(expected, wire::result_from_proto(resp.results(0)));
  // The JSON a CLI prints from the wire result is the JSON --local prints, timings and when
  // the engine ran aside (the digests, build, methods and tolerances must agree).
  AnalysisResult got = wire::result_from_proto(resp.results(0));
  AnalysisResult exp2 = expected;
  got.timings = exp2.timings = Timings{};
  EXPECT_FALSE(got.provenance.started_at.empty());
  got.provenance.started_at = exp2.provenance.started_at;
  got.provenance.duration_ms = exp2.provenance.duration_ms;
  EXPECT_EQ(result_to_json(exp2), result_to_json(got));
}

TEST(Analyze, MseResultEqualsLocalEngine) {
  check_matches_local(make_problem(12, 3, 6, 2, Loss::kMse, 1));
}

TEST(Analyze, CrossEntropyResultEqualsLocalEngine) {
  check_matches_local(make_problem(10, 4, 5, 3, Loss::kCrossEntropy, 2));
}

TEST(Analyze, BatchOfCheckpointsGivesOneResultPerCheckpoint) {
  Basind server;
  ASSERT_TRUE(server.started());
  AnalysisRequest r = make_problem(8, 3, 4, 2, Loss::kMse, 3);
  const int64_t n_params = r.model.num_params();
  std::vector<double> all;
  std::vector<std::vector<double>> each;
  for (int b = 0; b < 3; ++b) {
    std::vector<double> p = r.params;
    for (double& v : p) v *= 1.0 + 0.5 * b;
    each.push_back(p);
    all.insert(all.end(), p.begin(), p.end());
  }
  v1::AnalyzeRequest req = to_proto(r);
  wire::doubles_to_tensor(all, {3, n_params}, req.mutable_params()->mutable_tensor());
  v1::AnalyzeResponse resp;
  auto ctx = context();
  grpc::Status st = server.stub()->Analyze(ctx.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 3);
  for (int b = 0; b < 3; ++b) {
    AnalysisRequest local = r;
    local.params = each[b];
    expect_same_result(analyze(local), wire::result_from_proto(resp.results(b)));
  }
}

TEST(Analyze, ServerInfoAndHealth) {
  Basind server;
  ASSERT_TRUE(server.started());
  v1::GetServerInfoResponse info;
  auto ctx = context();
  ASSERT_TRUE(server.stub()->GetServerInfo(ctx.get(), {}, &info).ok());
  EXPECT_FALSE(info.version().empty());
  EXPECT_FALSE(info.backend().empty());
  EXPECT_EQ(info.user(), "anonymous");
  EXPECT_EQ(info.workers(), 1);
  EXPECT_EQ(info.limits().max_chunk_bytes(), 4 << 20);

  grpc::health::v1::HealthCheckRequest hreq;
  grpc::health::v1::HealthCheckResponse hresp;
  auto hctx = context();
  ASSERT_TRUE(server.health()->Check(hctx.get(), hreq, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  hreq.set_service("basin.v1.Basin");
  auto hctx2 = context();
  ASSERT_TRUE(server.health()->Check(hctx2.get(), hreq, &hresp).ok());
  EXPECT_EQ(hresp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace basin::test
