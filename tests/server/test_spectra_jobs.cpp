// Matrix-free spectra through a real basind (issue 12): a running job's stage reads the
// iteration ("lanczos i/M …") in Job.stage_detail, counting up, and a finished job has none.
#include <regex>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

TEST(SpectraJobs, RunningStageDetailCountsLanczosIterations) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  // N = 40·200 + 200 + 200·10 + 10 = 10,210 parameters: past auto's dense limit, so Lanczos runs
  // for some hundreds of iterations at a tight tolerance.
  AnalysisRequest problem = make_problem(48, 40, 200, 10, Loss::kCrossEntropy, 5);
  problem.want = Want{false, false, false, false};
  problem.want.hessian_top = true;
  problem.spectra.top_k = 6;
  problem.spectra.bottom_k = 2;
  problem.spectra.tol = 1e-12;
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = to_proto(problem);
  v1::SubmitJobResponse sresp;
  {
    auto ctx = context();
    ASSERT_TRUE(stub->SubmitJob(ctx.get(), sreq, &sresp).ok());
  }
  const std::vector<v1::Job> updates = watch_all(stub.get(), sresp.job_id());
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().state(), v1::JOB_STATE_SUCCEEDED) << updates.back().error().message();
  EXPECT_EQ(updates.back().stage_detail(), "");  // finished: no step any more

  const std::regex line(R"(lanczos (\d+)/(\d+)( \(.*\))?)");
  int64_t last = 0, seen = 0;
  for (const v1::Job& j : updates) {
    if (j.stage() != "lanczos") continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(j.stage_detail(), m, line)) << "'" << j.stage_detail() << "'";
    const int64_t i = std::stoll(m[1]), total = std::stoll(m[2]);
    EXPECT_GT(i, last) << j.stage_detail();
    EXPECT_LE(i, total) << j.stage_detail();
    last = i;
    ++seen;
  }
  EXPECT_GT(seen, 0) << "no update of the job showed its Lanczos iteration";
  // The result is the engine's own.
  const v1::Job done = wait_final(stub.get(), sresp.job_id());
  ASSERT_EQ(done.result().results_size(), 1);
  const AnalysisResult got = wire::result_from_proto(done.result().results(0));
  ASSERT_TRUE(got.hessian_top.has_value());
  EXPECT_EQ(got.hessian_top->method, "lanczos");
  EXPECT_EQ(got.hessian_top->eigenvalues.size(), 6u);
}

}  // namespace
}  // namespace basin::test
