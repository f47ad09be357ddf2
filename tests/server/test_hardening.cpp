// A shared server that cannot be tied up (issue 15): layer limits, deadlines that stop the work,
// a shutdown bounded by --shutdown-timeout, and statuses that are the right code, short, and
// free of the server's internals.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/client_unary_call.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "basin/model.hpp"
#include "basin/npy.hpp"
#include "basin/wire/grpc_status.hpp"
#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// No client-visible message may carry the server's source paths.
void expect_no_internals(const grpc::Status& st) {
  EXPECT_EQ(st.error_message().find("/server/"), std::string::npos) << st.error_message();
  EXPECT_EQ(st.error_message().find(".cpp:"), std::string::npos) << st.error_message();
}

// dense(w) -> `acts` alternating tanh / identity layers -> dense(1), n examples.
AnalysisRequest deep_problem(int64_t acts, int64_t n, int64_t w) {
  AnalysisRequest r = make_problem(n, 2, w, 1, Loss::kMse, 5);
  std::vector<Layer> layers{Layer::dense(w)};
  for (int64_t i = 0; i < acts; ++i) layers.push_back(Layer::act(i % 2 ? Activation::kTanh : Activation::kIdentity));
  layers.push_back(Layer::dense(1));
  r.model.layers = layers;
  r.params.resize(static_cast<size_t>(r.model.num_params()));
  for (size_t j = 0; j < r.params.size(); ++j) r.params[j] = 0.3 * std::sin(1.0 + double(j));
  return r;
}

// Only the model: the layer count is refused before anything else is looked at.
v1::AnalyzeRequest deep_model_only(int64_t acts) {
  v1::AnalyzeRequest p;
  v1::Model* m = p.mutable_model();
  m->set_input_dim(2);
  m->add_layers()->set_type("dense");
  m->mutable_layers(0)->set_out(4);
  for (int64_t i = 0; i < acts; ++i) m->add_layers()->set_type("relu");
  return p;
}

TEST(Hardening, DeepModelsAreRefusedAtOnceNamingTheLimit) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::GetServerInfoResponse info;
  {
    auto ctx = context();
    ASSERT_TRUE(stub->GetServerInfo(ctx.get(), {}, &info).ok());
  }
  EXPECT_EQ(info.limits().max_layers(), 10000);
  for (const int64_t acts : {40000, 500000}) {
    // Before: 40k layers took 7 s, 500k ran past a 60 s deadline. A generous bound here,
    // that only a quadratic validation would miss.
    auto ctx = context("", 30);
    v1::AnalyzeResponse resp;
    const grpc::Status st = stub->Analyze(ctx.get(), deep_model_only(acts), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << acts << ": " << st.error_message();
    EXPECT_NE(st.error_message().find("max_layers"), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find(std::to_string(acts + 1) + " layers"), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("10000"), std::string::npos) << st.error_message();
    expect_no_internals(st);
    // SubmitJob: the same rule, before anything is stored.
    v1::SubmitJobRequest sreq;
    *sreq.mutable_request() = deep_model_only(acts);
    v1::SubmitJobResponse sresp;
    auto sctx = context("", 30);
    const grpc::Status sst = stub->SubmitJob(sctx.get(), sreq, &sresp);
    EXPECT_EQ(sst.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << sst.error_message();
    EXPECT_NE(sst.error_message().find("max_layers"), std::string::npos) << sst.error_message();
  }
}

// With the limit raised, a deep request whose client deadline is short is stopped: the client
// gets DEADLINE_EXCEEDED and the one worker is free again for the next request.
TEST(Hardening, DeadlineStopsADeepAnalysisAndFreesTheWorker) {
  Basind server({"--max-layers", "1000000", "--workers", "1", "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  // 200k layers with the exact Hessian (33 R-op blocks × 2 passes × 200k layers), for 4
  // checkpoints: ~15 s each uncancelled on the 2-core VM (`basin analyze --local`), so about a
  // minute in all, far beyond the deadline and the wait below.
  AnalysisRequest deep = deep_problem(200000, 8, 8);
  deep.want = Want{true, true, true};
  std::vector<std::vector<double>> checkpoints(4, deep.params);
  for (size_t b = 0; b < checkpoints.size(); ++b) checkpoints[b][0] += 0.01 * double(b);
  v1::AnalyzeRequest deep_proto;
  wire::request_to_proto(deep, &deep_proto, checkpoints);
  v1::AnalyzeResponse resp;
  {
    auto ctx = context("", 2);
    const grpc::Status st = stub->Analyze(ctx.get(), deep_proto, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  }
  // The worker must be free soon: a small request of the same user completes within a wait a
  // still-spinning worker (most of a minute left) could not meet.
  const AnalysisRequest small = make_problem(6, 3, 4, 2, Loss::kMse, 3);
  auto ctx = context("", 10);
  const grpc::Status st = stub->Analyze(ctx.get(), to_proto(small), &resp);
  ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  ASSERT_EQ(resp.results_size(), 1);
  expect_same_result(analyze(small), wire::result_from_proto(resp.results(0)));
  const std::string text = http_get_metrics(server.metrics_port());
  EXPECT_EQ(metric_value(text, "basin_jobs{state=\"running\"}"), 0) << text;
}

std::string submit(v1::Basin::Stub* stub, const v1::AnalyzeRequest& req) {
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = req;
  v1::SubmitJobResponse sresp;
  auto ctx = context();
  const grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return sresp.job_id();
}

v1::Job get(v1::Basin::Stub* stub, const std::string& id) {
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  auto ctx = context();
  EXPECT_TRUE(stub->GetJob(ctx.get(), req, &job).ok());
  return job;
}

// Polls until `pred(job)` or 20 s.
template <class Pred>
bool wait_job(v1::Basin::Stub* stub, const std::string& id, Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred(get(stub, id))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// SIGTERM with a running job and an in-flight Analyze: the exit is bounded by the timeout plus
// a short grace; the interrupted job re-runs after a restart and succeeds.
TEST(Hardening, ShutdownTimeoutBoundsTheExitAndRequeuesTheJob) {
  TempDir data;
  std::string job;
  grpc::Status analyze_status;
  {
    Basind server({"--data-dir", data.path(), "--workers", "2", "--shutdown-timeout", "2"});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    job = submit(stub.get(), slow_request(4000));
    ASSERT_TRUE(wait_job(stub.get(), job, [](const v1::Job& j) { return j.state() == v1::JOB_STATE_RUNNING; }));
    std::thread call([&] {
      auto ctx = context("", 120);
      v1::AnalyzeResponse resp;
      analyze_status = stub->Analyze(ctx.get(), slow_request(20000, 9), &resp);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the Analyze is running
    const auto t0 = Clock::now();
    const int status = server.terminate(std::chrono::seconds(30));
    const double took = seconds_since(t0);
    call.join();
    EXPECT_EQ(status, 0) << server.log();
    EXPECT_LT(took, 2 + 10) << "exit took " << took << " s with --shutdown-timeout 2\n" << server.log();
    EXPECT_TRUE(analyze_status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                analyze_status.error_code() == grpc::StatusCode::CANCELLED)
        << analyze_status.error_code() << ": " << analyze_status.error_message();
  }
  Basind server({"--data-dir", data.path()});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const v1::Job done = wait_final(stub.get(), job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  EXPECT_EQ(done.attempts(), 1) << "the interrupted run is not counted";
}

// A run stuck in one library call (a 3000 × 3000 SVD cannot be interrupted) does not hold the
// exit: basind logs what it abandons, writes the job back as queued, and exits with status 3.
TEST(Hardening, ShutdownAbandonsARunStuckInALibraryCall) {
  TempDir data;
  std::string job;
  {
    Basind server({"--data-dir", data.path(), "--shutdown-timeout", "1"});
    ASSERT_TRUE(server.started());
    auto stub = server.stub();
    // G is 3000 × 3025 (n·k = 3000 rows, N = 54·54 + 54 + 55): one dgesdd of ~10 s or more.
    AnalysisRequest r = make_problem(3000, 54, 54, 1, Loss::kNone, 17);
    r.targets.clear();
    r.want = Want{true, false, false};
    r.method = Method::kSvd;
    job = submit(stub.get(), to_proto(r));
    ASSERT_TRUE(wait_job(stub.get(), job, [](const v1::Job& j) { return j.stage() == "solve"; }))
        << get(stub.get(), job).DebugString();
    const auto t0 = Clock::now();
    const int status = server.terminate(std::chrono::seconds(30));
    const double took = seconds_since(t0);
    EXPECT_EQ(status, 3) << server.log();
    EXPECT_LT(took, 1 + 10) << server.log();
    EXPECT_NE(server.log().find("abandoned running job " + job), std::string::npos) << server.log();
  }
  Basind server({"--data-dir", data.path(), "--shutdown-timeout", "0"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const v1::Job again = get(stub.get(), job);
  EXPECT_TRUE(again.state() == v1::JOB_STATE_QUEUED || again.state() == v1::JOB_STATE_RUNNING) << again.DebugString();
  EXPECT_LE(again.attempts(), 1) << "the abandoned run is not counted";
  v1::CancelJobRequest c;
  c.set_job_id(job);
  v1::Job j;
  auto ctx = context();
  EXPECT_TRUE(stub->CancelJob(ctx.get(), c, &j).ok());
}

// Huge echoed input: the client gets the real error, with the echo cut short.
TEST(Hardening, EchoedInputIsTruncated) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const std::string mib(1 << 20, 'x');
  v1::AnalyzeRequest req = to_proto(make_problem(6, 3, 4, 2, Loss::kMse, 11));
  req.mutable_model()->mutable_layers(1)->set_type(mib);
  v1::AnalyzeResponse resp;
  {
    auto ctx = context();
    const grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message().substr(0, 300);
    EXPECT_NE(st.error_message().find("unknown layer"), std::string::npos) << st.error_message().substr(0, 300);
    EXPECT_NE(st.error_message().find("(1048576 bytes)"), std::string::npos) << st.error_message().substr(0, 300);
    EXPECT_LT(st.error_message().size(), 1600u);
    expect_no_internals(st);
  }
  const std::string eight_mib(8 << 20, 'a');
  {
    v1::AnalyzeRequest r = to_proto(make_problem(6, 3, 4, 2, Loss::kMse, 11));
    r.mutable_params()->set_blob_id(eight_mib);
    auto ctx = context();
    const grpc::Status st = stub->Analyze(ctx.get(), r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message().substr(0, 300);
    EXPECT_NE(st.error_message().find("params.blob_id"), std::string::npos) << st.error_message().substr(0, 300);
    EXPECT_NE(st.error_message().find("(8388608 bytes)"), std::string::npos) << st.error_message().substr(0, 300);
    EXPECT_LT(st.error_message().size(), 1600u);
    expect_no_internals(st);
  }
  {
    // Well-formed but unknown (sha256:<64 hex>) is NOT_FOUND; an 8 MiB job id likewise.
    v1::GetJobRequest g;
    g.set_job_id(eight_mib);
    v1::Job job;
    auto ctx = context();
    const grpc::Status st = stub->GetJob(ctx.get(), g, &job);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message().substr(0, 300);
    EXPECT_NE(st.error_message().find("(8388608 bytes)"), std::string::npos) << st.error_message().substr(0, 300);
    EXPECT_LT(st.error_message().size(), 1600u);
  }
}

// Bytes that are not a protobuf message: INVALID_ARGUMENT naming the message type (gRPC's own
// handler would answer INTERNAL with no message).
TEST(Hardening, MalformedProtobufIsInvalidArgument) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto channel = server.channel();
  // Field 1 (model, length-delimited) claiming 100 bytes that are not there.
  const std::string bad = std::string("\x0a\x64", 2) + "truncated";
  for (const auto& [method, type] : std::vector<std::pair<std::string, std::string>>{
           {"/basin.v1.Basin/Analyze", "basin.v1.AnalyzeRequest"},
           {"/basin.v1.Basin/SubmitJob", "basin.v1.SubmitJobRequest"},
           {"/basin.v1.Basin/GetJob", "basin.v1.GetJobRequest"}}) {
    grpc::Slice slice(bad);
    grpc::ByteBuffer request(&slice, 1), response;
    auto ctx = context();
    const grpc::Status st = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel.get(), grpc::internal::RpcMethod(method.c_str(), grpc::internal::RpcMethod::NORMAL_RPC),
        ctx.get(), request, &response);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(type), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("11 bytes"), std::string::npos) << st.error_message();
  }
  // The server still serves well-formed calls on the same methods.
  v1::AnalyzeResponse resp;
  auto ctx = context();
  EXPECT_TRUE(server.stub()->Analyze(ctx.get(), to_proto(make_problem(6, 3, 4, 2, Loss::kMse, 1)), &resp).ok());
}

// A full disk: RESOURCE_EXHAUSTED naming the data dir and the space left, no source path, a
// request id; the server keeps serving and recovers once space is freed. Needs a small file
// system: a tmpfs mounted here (root, as in CI), skipped where mount(2) is not allowed.
TEST(Hardening, FullDiskIsResourceExhaustedNamingTheDataDir) {
  TempDir mnt;
  if (mount("tmpfs", mnt.path().c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "): needs root";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { (void)umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt.path()};
  const std::string data = mnt.path() + "/data";
  const std::string filler = mnt.path() + "/filler";
  {
    Basind server({"--data-dir", data});
    ASSERT_TRUE(server.started()) << server.log();
    auto stub = server.stub();
    // Fill the file system to the last block.
    {
      std::ofstream f(filler, std::ios::binary);
      const std::string block(4096, 'f');
      while (f.write(block.data(), block.size())) {}
    }
    // A request of ~300 KB: its row cannot fit.
    const v1::AnalyzeRequest big = to_proto(make_problem(4000, 8, 4, 1, Loss::kMse, 2));
    v1::SubmitJobRequest sreq;
    *sreq.mutable_request() = big;
    v1::SubmitJobResponse sresp;
    grpc::Status st;
    {
      auto ctx = context();
      st = stub->SubmitJob(ctx.get(), sreq, &sresp);
    }
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
    EXPECT_NE(st.error_message().find("data dir " + data), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("free of"), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("request id req-"), std::string::npos) << st.error_message();
    expect_no_internals(st);
    // The details are in the server's log under that request id.
    const std::string id = st.error_message().substr(st.error_message().find("req-"), 16);
    EXPECT_NE(server.log().find("request " + id), std::string::npos) << server.log();
    // An upload hits the same wall.
    {
      v1::UploadBlobResponse uresp;
      auto ctx = context();
      auto writer = stub->UploadBlob(ctx.get(), &uresp);
      v1::UploadBlobRequest msg;
      msg.set_chunk(std::string(1 << 20, 'u'));
      writer->Write(msg);
      writer->WritesDone();
      const grpc::Status ust = writer->Finish();
      EXPECT_EQ(ust.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << ust.error_message();
      EXPECT_NE(ust.error_message().find("data dir " + data), std::string::npos) << ust.error_message();
      expect_no_internals(ust);
    }
    // Space freed: the same request is accepted and runs.
    ASSERT_EQ(std::remove(filler.c_str()), 0);
    {
      auto ctx = context();
      st = stub->SubmitJob(ctx.get(), sreq, &sresp);
    }
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(wait_final(stub.get(), sresp.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
    EXPECT_EQ(server.terminate(), 0) << server.log();
  }
}

// client_status, the last step of every status basind sends (unit level; the tests above see
// it end to end).
TEST(Hardening, ClientStatusStripsSourcePathsAndCapsTheMessage) {
  const grpc::Status internal(grpc::StatusCode::INTERNAL,
                              "sqlite: sqlite3_step(stmt_) failed with disk I/O error at /src/basin/server/sqlite_db.cpp:54");
  const grpc::Status once = wire::client_status(internal);
  EXPECT_EQ(once.error_code(), grpc::StatusCode::INTERNAL);
  expect_no_internals(once);
  EXPECT_NE(once.error_message().find("disk I/O error"), std::string::npos) << once.error_message();
  EXPECT_NE(once.error_message().find("(request id req-"), std::string::npos) << once.error_message();
  EXPECT_EQ(wire::client_status(once).error_message(), once.error_message()) << "not idempotent";

  const grpc::Status huge(grpc::StatusCode::INVALID_ARGUMENT, "field: " + std::string(10000, 'z'));
  const grpc::Status cut = wire::client_status(huge);
  EXPECT_LE(cut.error_message().size(), wire::kMaxStatusMessageBytes);
  EXPECT_NE(cut.error_message().find("(message cut from 10007 bytes)"), std::string::npos) << cut.error_message();
  EXPECT_EQ(cut.error_message().find("request id"), std::string::npos) << "a user error needs no request id";
  const grpc::Status plain(grpc::StatusCode::NOT_FOUND, "job_id: no job 'x'");
  EXPECT_EQ(wire::client_status(plain).error_message(), plain.error_message());
}

// Runs `cmd` through /bin/sh with stderr joined to stdout: {exit status, output}.
std::pair<int, std::string> shell(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// --max-layers: bad values stop basind (and the CLI) with a message naming the flag; the CLI
// holds --local runs to the same limit and `basin info` shows the server's.
TEST(Hardening, MaxLayersFlag) {
  for (const char* value : {"0", "-5", "many"}) {
    const auto [code, out] = shell(std::string(BASIND_PATH) + " --listen 127.0.0.1:0 --max-layers '" + value + "'");
    EXPECT_NE(code, 0) << value << ": " << out;
    EXPECT_NE(out.find("--max-layers"), std::string::npos) << out;
  }
#ifdef BASIN_CLI_PATH
  TempDir dir;
  const std::string d = dir.path();
  const AnalysisRequest p = make_problem(5, 3, 4, 2, Loss::kNone, 8);  // dense, tanh, dense: 3 layers
  {
    std::ofstream(d + "/model.json") << model_to_json(p.model);
  }
  write_npy(d + "/params.npy", make_npy_f64({p.model.num_params()}, p.params));
  write_npy(d + "/x.npy", make_npy_f64({5, 3}, p.inputs));
  const std::string files = " --model " + d + "/model.json --params " + d + "/params.npy --inputs " + d + "/x.npy";
  const std::string cli = BASIN_CLI_PATH;
  EXPECT_EQ(shell(cli + " analyze --local" + files + " --max-layers 3 --json").first, 0);
  const auto [code, out] = shell(cli + " analyze --local" + files + " --max-layers 2 --json");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("3 layers, over the limit of 2 layers"), std::string::npos) << out;
  EXPECT_NE(shell(cli + " analyze --local" + files + " --max-layers 0").first, 0);

  Basind server({"--max-layers", "123"});
  ASSERT_TRUE(server.started());
  const auto [icode, info] = shell(cli + " info --server " + server.address() + " --json");
  EXPECT_EQ(icode, 0) << info;
  EXPECT_NE(info.find("\"max_layers\":123"), std::string::npos) << info;
#endif
}

}  // namespace
}  // namespace basin::test
