// Crash loop (issue 15): kill -9 at random moments while clients submit jobs, upload blobs and
// run analyses; 20 cycles on the same data dir. Afterwards every job whose SubmitJob returned an
// id is there exactly once and succeeded with the result a local run gives, and every job in
// the server was sent by some client.
//
// Accounting: each of alice's SubmitJobs carries a unique priority, minus its submission
// number, which ListJobs returns (within one user's FIFO queue priority reorders nothing; below
// 0 it lets bob's analyses, priority 0, run between alice's jobs). A job whose SubmitJob was cut
// off by the kill may or may not have been accepted; it may appear at most once, with the right
// result. No other job may appear, and analyses never become jobs.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"
#include "basind_run.hpp"

namespace basin::test {
namespace {

constexpr int kCycles = 20;
constexpr int kProblems = 5;
constexpr int kSubmitters = 3;
constexpr int kMaxSubmitsPerThreadPerCycle = 40;  // bounds the work per cycle

struct Attempt {
  int problem = 0;
  bool by_blob = false;
  std::string id;  // set when SubmitJob returned OK
};

TEST(CrashLoop, KillNineDuringLoadLosesAndDuplicatesNoJob) {
  TempDir data;
  const std::string tokens = write_tokens(data);  // outside the data dir below
  const std::string data_dir = data.path() + "/data";
  const std::string alice = "tok-alice", bob = "tok-bob";
  std::vector<AnalysisRequest> problems;
  std::vector<AnalysisResult> expected;
  for (int p = 0; p < kProblems; ++p) {
    problems.push_back(make_problem(5 + p, 2, 3, 1 + p % 2, Loss::kMse, 1500 + p));
    expected.push_back(analyze(problems.back()));
  }
  const std::vector<std::string> args = {"--data-dir", data_dir, "--tokens", tokens, "--workers", "2",
                                         "--max-attempts", "1000", "--max-queued-jobs", "100000"};
  std::mutex mu;
  std::map<int32_t, Attempt> attempts;  // by priority
  std::atomic<int32_t> next_priority{1};
  std::atomic<int> analyses_ok{0}, analyses_failed{0};
  std::mt19937 rng(15);  // the kill moments and the choices below are reproducible

  for (int cycle = 0; cycle < kCycles; ++cycle) {
    Basind server(args);
    ASSERT_TRUE(server.started()) << "cycle " << cycle;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < kSubmitters; ++t) {
      const uint32_t seed = rng();
      clients.emplace_back([&, seed] {
        std::mt19937 local(seed);
        auto stub = server.stub();
        for (int i = 0; i < kMaxSubmitsPerThreadPerCycle && !stop; ++i) {
          const int32_t priority = -(next_priority++);
          Attempt a;
          a.problem = static_cast<int>(local() % kProblems);
          a.by_blob = local() % 3 == 0;
          v1::SubmitJobRequest req;
          *req.mutable_request() = to_proto(problems[a.problem]);
          req.set_priority(priority);
          if (a.by_blob) {
            const AnalysisRequest& p = problems[a.problem];
            const std::string blob =
                upload_blob(stub.get(), npy_f64({p.num_examples, p.model.input_dim}, p.inputs),
                            nullptr, 5, alice);
            if (blob.empty()) break;  // the server is gone
            req.mutable_request()->mutable_inputs()->set_blob_id(blob);
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            attempts[priority] = a;  // before the call: its job may exist even if it fails
          }
          v1::SubmitJobResponse resp;
          auto ctx = context(alice, 5);
          const grpc::Status st = stub->SubmitJob(ctx.get(), req, &resp);
          if (!st.ok()) break;
          std::lock_guard<std::mutex> lock(mu);
          attempts[priority].id = resp.job_id();
        }
      });
    }
    clients.emplace_back([&, seed = rng()] {
      std::mt19937 local(seed);
      auto stub = server.stub();
      for (int i = 0; i < kMaxSubmitsPerThreadPerCycle && !stop; ++i) {
        const int p = static_cast<int>(local() % kProblems);
        v1::AnalyzeResponse resp;
        auto ctx = context(bob, 5);
        if (!stub->Analyze(ctx.get(), to_proto(problems[p]), &resp).ok()) {
          ++analyses_failed;
          break;
        }
        ++analyses_ok;
        EXPECT_EQ(resp.results_size(), 1);
        if (resp.results_size() == 1) {
          expect_same_result(expected[p], wire::result_from_proto(resp.results(0)));
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 300));
    server.kill9();
    stop = true;
    for (std::thread& c : clients) c.join();
  }

  // One more start: every job runs to its end.
  Basind server(args);
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  int accepted = 0, unknown = 0;
  for (const auto& [priority, a] : attempts) {
    if (a.id.empty()) {
      ++unknown;
      continue;
    }
    ++accepted;
    const v1::Job job = wait_final(stub.get(), a.id, alice);
    ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
    EXPECT_EQ(job.priority(), priority) << a.id;
    ASSERT_EQ(job.result().results_size(), 1) << a.id;
    expect_same_result(expected[a.problem], wire::result_from_proto(job.result().results(0)));
  }
  v1::ListJobsRequest lreq;
  lreq.set_limit(1 << 20);
  v1::ListJobsResponse list;
  auto ctx = context(alice);
  ASSERT_TRUE(stub->ListJobs(ctx.get(), lreq, &list).ok());
  // Analyses are never jobs, not even when a kill interrupted them.
  v1::ListJobsResponse bobs;
  auto bctx = context(bob);
  ASSERT_TRUE(stub->ListJobs(bctx.get(), lreq, &bobs).ok());
  EXPECT_EQ(bobs.jobs_size(), 0);
  std::set<std::string> ids;
  std::set<int32_t> priorities;
  int cut_off_but_accepted = 0;
  for (const v1::Job& j : list.jobs()) {
    EXPECT_TRUE(ids.insert(j.id()).second) << "job listed twice: " << j.id();
    EXPECT_TRUE(priorities.insert(j.priority()).second)
        << "one submission became two jobs: priority " << j.priority();
    auto it = attempts.find(j.priority());
    ASSERT_NE(it, attempts.end()) << "a job nobody submitted: " << j.DebugString();
    if (!it->second.id.empty()) {
      EXPECT_EQ(j.id(), it->second.id);
      continue;
    }
    // Accepted, but the reply was lost in the kill: it must still be a correct job.
    ++cut_off_but_accepted;
    const v1::Job full = wait_final(stub.get(), j.id(), alice);
    ASSERT_EQ(full.state(), v1::JOB_STATE_SUCCEEDED) << full.DebugString();
    ASSERT_EQ(full.result().results_size(), 1);
    expect_same_result(expected[it->second.problem],
                       wire::result_from_proto(full.result().results(0)));
  }
  for (const auto& [priority, a] : attempts) {
    if (!a.id.empty()) EXPECT_EQ(ids.count(a.id), 1u) << "accepted job missing: " << a.id;
  }
  EXPECT_EQ(static_cast<int>(list.jobs_size()), accepted + cut_off_but_accepted);
  // The load really was under the kills: jobs accepted, analyses answered, calls cut off.
  EXPECT_GT(accepted, kCycles);
  EXPECT_GT(analyses_ok.load(), 0);
  EXPECT_GT(unknown + analyses_failed.load(), 0);
  std::printf("crash loop: %d cycles, %d jobs accepted, %d submissions cut off (%d of them "
              "accepted), %d analyses answered, %d cut off\n",
              kCycles, accepted, unknown, cut_off_but_accepted, analyses_ok.load(),
              analyses_failed.load());
  ASSERT_EQ(server.terminate(), 0) << server.log();

  // What is left on disk is consistent: database, blobs and the jobs' references to them.
  const ProcessResult check = run_basind({"--check", "--data-dir", data_dir});
  EXPECT_EQ(check.status, 0) << check.output;
}

}  // namespace
}  // namespace basin::test
