// 32 concurrent clients with mixed requests: every answer is the right one.
#include <atomic>
#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

TEST(Concurrency, ThirtyTwoClientsMixedRequestsNoMixUps) {
  TempDir dir;
  Basind server({"--tokens", write_tokens(dir), "--workers", "2"});
  ASSERT_TRUE(server.started());
  constexpr int kClients = 32;
  // Distinct problems (size, loss, seed) so a result delivered to the wrong caller is caught.
  std::vector<AnalysisRequest> problems;
  std::vector<AnalysisResult> expected;
  for (int i = 0; i < kClients; ++i) {
    const Loss loss = i % 3 == 0 ? Loss::kCrossEntropy : (i % 3 == 1 ? Loss::kMse : Loss::kNone);
    problems.push_back(make_problem(4 + i % 7, 2 + i % 3, 3 + i % 5, 2 + i % 2, loss, 1000 + i));
    expected.push_back(analyze(problems.back()));
  }
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      // Each client has its own channel (its own connection), like separate scripts.
      auto stub = server.stub();
      const std::string token = i % 2 ? "tok-alice" : "tok-bob";
      AnalysisResult got;
      if (i % 4 == 0) {
        v1::SubmitJobRequest sreq;
        *sreq.mutable_request() = to_proto(problems[i]);
        v1::SubmitJobResponse sresp;
        auto ctx = context(token);
        grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
        ASSERT_TRUE(st.ok()) << st.error_message();
        v1::Job job = wait_final(stub.get(), sresp.job_id(), token);
        ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error().message();
        got = wire::result_from_proto(job.result().results(0));
      } else {
        v1::AnalyzeResponse resp;
        auto ctx = context(token);
        grpc::Status st = stub->Analyze(ctx.get(), to_proto(problems[i]), &resp);
        ASSERT_TRUE(st.ok()) << st.error_message();
        ASSERT_EQ(resp.results_size(), 1);
        got = wire::result_from_proto(resp.results(0));
      }
      SCOPED_TRACE("client " + std::to_string(i));
      expect_same_result(expected[i], got);
      ok += 1;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients);
}

}  // namespace
}  // namespace basin::test
