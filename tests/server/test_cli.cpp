// The basin CLI's remote commands against a real basind.
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include <cstdio>
#include <fstream>

#include "basin/model.hpp"
#include "basin/npy.hpp"
#include "basind_fixture.hpp"
#include "host_memory.hpp"

#ifndef BASIN_CLI_PATH
#error "BASIN_CLI_PATH must point at the basin executable"
#endif

namespace basin::test {
namespace {

struct CliRun {
  int code = -1;
  std::string out;
};

// Runs the CLI through /bin/sh; stdout captured, stderr discarded.
CliRun run_cli(const std::string& args, const std::string& env = "") {
  CliRun r;
  const std::string cmd = env + " " + std::string(BASIN_CLI_PATH) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Timings, and when and where the engine ran (provenance's host, started_at, duration_ms and
// the server's queue_ms/total_ms), differ between runs; everything else must be identical.
std::string strip_timings(const std::string& text) {
  std::string out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      out += line + "\n";
      continue;
    }
    doc.erase("timings_ms");
    if (doc.contains("provenance"))
      for (const char* key : {"host", "started_at", "duration_ms", "queue_ms", "total_ms"}) doc["provenance"].erase(key);
    out += doc.dump() + "\n";
  }
  return out;
}

TEST(Cli, RemoteCommandsMatchLocal) {
  TempDir dir;
  const std::string d = dir.path();
  const AnalysisRequest p = make_problem(12, 3, 5, 2, Loss::kMse, 61);
  {
    std::ofstream(d + "/model.json") << model_to_json(p.model);
  }
  write_npy(d + "/params.npy", make_npy_f64({p.model.num_params()}, p.params));
  write_npy(d + "/x.npy", make_npy_f64({12, 3}, p.inputs));
  write_npy(d + "/y.npy", make_npy_f64({12, 2}, p.targets));
  const std::string files = "--model " + d + "/model.json --params " + d + "/params.npy --inputs " +
                            d + "/x.npy --targets " + d + "/y.npy --loss mse --device cpu";

  TempDir tokens_dir;
  Basind server({"--tokens", write_tokens(tokens_dir)});
  ASSERT_TRUE(server.started());
  const std::string remote = "--server " + server.address() + " --token tok-alice";

  const CliRun local = run_cli("analyze --local " + files + " --json");
  ASSERT_EQ(local.code, 0);
  const CliRun over_grpc = run_cli("analyze " + remote + " " + files + " --json");
  ASSERT_EQ(over_grpc.code, 0);
  EXPECT_EQ(strip_timings(local.out), strip_timings(over_grpc.out));

  // No token: UNAUTHENTICATED is an error exit.
  EXPECT_NE(run_cli("analyze --server " + server.address() + " " + files + " --json").code, 0);
  // $BASIN_TOKEN works as well as --token.
  EXPECT_EQ(run_cli("jobs --server " + server.address() + " --token tok-bob").code, 0);
  EXPECT_EQ(run_cli("jobs --server " + server.address(), "BASIN_TOKEN=tok-bob").code, 0);

  const CliRun submitted = run_cli("submit " + remote + " " + files);
  ASSERT_EQ(submitted.code, 0);
  std::string id = submitted.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  ASSERT_EQ(id.rfind("job-", 0), 0u) << id;
  EXPECT_EQ(run_cli("watch " + remote + " " + id).code, 0);
  const CliRun result = run_cli("result " + remote + " " + id + " --json");
  ASSERT_EQ(result.code, 0);
  EXPECT_EQ(strip_timings(local.out), strip_timings(result.out));
  const CliRun jobs = run_cli("jobs " + remote + " --json");
  EXPECT_NE(jobs.out.find(id), std::string::npos);
  EXPECT_EQ(run_cli("jobs --server " + server.address() + " --token tok-bob --json").out, "[]\n");
  EXPECT_EQ(run_cli("cancel " + remote + " " + id).code, 0);
  EXPECT_NE(run_cli("cancel " + remote + " job-nope").code, 0);
  EXPECT_EQ(run_cli("info " + remote + " --json").code, 0);

  EXPECT_EQ(run_cli("health --server " + server.address()).code, 0);
  EXPECT_EQ(server.terminate(), 0);
  EXPECT_NE(run_cli("health --server " + server.address()).code, 0);
}

// On the cpu backend `basin info` shows the host's memory (it used to print "0 MiB free of 0 MiB"),
// and GetServerInfo reports /proc/meminfo's MemTotal.
TEST(Cli, InfoOnTheCpuShowsTheHostsMemory) {
  Basind server({"--device", "cpu"});
  ASSERT_TRUE(server.started());
  const CliRun info = run_cli("info --server " + server.address());
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_EQ(info.out.find("0 MiB free of 0 MiB"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("(host RAM)"), std::string::npos) << info.out;
  const server::HostMemory host = server::host_memory();
  ASSERT_GT(host.total_bytes, 0u);
  EXPECT_NE(info.out.find("of " + std::to_string(host.total_bytes >> 20) + " MiB"), std::string::npos) << info.out;
  v1::GetServerInfoResponse resp;
  auto ctx = context();
  ASSERT_TRUE(server.stub()->GetServerInfo(ctx.get(), {}, &resp).ok());
  EXPECT_EQ(resp.device_memory_total_bytes(), static_cast<int64_t>(host.total_bytes));
  EXPECT_GT(resp.device_memory_free_bytes(), 0);
  EXPECT_LE(resp.device_memory_free_bytes(), resp.device_memory_total_bytes());
}

TEST(HostMemory, ParsesMeminfo) {
  const server::HostMemory m =
      server::parse_meminfo("MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   1000 kB\nbroken\n");
  EXPECT_EQ(m.total_bytes, 24576000ull * 1024);
  EXPECT_EQ(m.available_bytes, 1000ull * 1024);
  EXPECT_EQ(server::parse_meminfo("").total_bytes, 0u);
}

}  // namespace
}  // namespace basin::test
