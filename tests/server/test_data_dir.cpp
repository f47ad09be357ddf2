// The data dir (issue 15, items 3 and 5): no silent loss of history at start-up, owner-only
// files, exposure warnings, and `basind --check`.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"
#include "basind_run.hpp"

namespace basin::test {
namespace {

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

mode_t mode_of(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << path << ": cannot stat";
    return 0;
  }
  return st.st_mode & 07777;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    closedir(d);
  }
  return names;
}

// A job whose inputs are an uploaded .npy blob; waits until it succeeded. Returns the blob's hex.
std::string run_blob_job(Basind* server, std::string* job_id = nullptr) {
  auto stub = server->stub();
  const AnalysisRequest r = make_problem(6, 2, 3, 1, Loss::kMse, 1501);
  const std::string id = upload_blob(stub.get(), npy_f64({6, 2}, r.inputs));
  EXPECT_FALSE(id.empty());
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = to_proto(r);
  sreq.mutable_request()->mutable_inputs()->set_blob_id(id);
  v1::SubmitJobResponse sresp;
  auto ctx = context();
  const grpc::Status st = stub->SubmitJob(ctx.get(), sreq, &sresp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  const v1::Job job = wait_final(stub.get(), sresp.job_id());
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  if (job.result().results_size() == 1) {
    expect_same_result(analyze(r), wire::result_from_proto(job.result().results(0)));
  }
  if (job_id != nullptr) *job_id = sresp.job_id();
  return id.substr(7);
}

int64_t list_jobs_count(Basind* server) {
  v1::ListJobsResponse list;
  auto ctx = context();
  EXPECT_TRUE(server->stub()->ListJobs(ctx.get(), {}, &list).ok());
  return list.jobs_size();
}

std::vector<std::string> serve_args(const std::string& dir) {
  return {"--listen", "127.0.0.1:0", "--data-dir", dir};
}

TEST(DataDir, EmptyDatabaseNextToBlobsIsRefusedUntilAllowed) {
  TempDir data;
  {
    Basind server({"--data-dir", data.path()});
    ASSERT_TRUE(server.started());
    run_blob_job(&server);
    ASSERT_EQ(server.terminate(), 0) << server.log();
  }
  const std::string db = data.path() + "/basin.db";
  ASSERT_EQ(truncate(db.c_str(), 0), 0);

  const ProcessResult refused = run_basind(serve_args(data.path()));
  EXPECT_NE(refused.status, 0) << refused.output;
  EXPECT_TRUE(contains(refused.output, "refusing to start")) << refused.output;
  EXPECT_TRUE(contains(refused.output, db + " is empty (0 bytes)")) << refused.output;
  EXPECT_TRUE(contains(refused.output, "blobs/ holds 1 blob file(s)")) << refused.output;
  EXPECT_TRUE(contains(refused.output, "--allow-new-database")) << refused.output;
  EXPECT_FALSE(contains(refused.output, "listening on")) << refused.output;
  EXPECT_EQ(mode_of(db) & 0777, 0600u);
  EXPECT_EQ(read_file_bytes(db).size(), 0u) << "a refused start must not write the database";

  // A missing database is the same loss.
  ASSERT_EQ(unlink(db.c_str()), 0);
  const ProcessResult missing = run_basind(serve_args(data.path()));
  EXPECT_NE(missing.status, 0) << missing.output;
  EXPECT_TRUE(contains(missing.output, "no usable job database " + db)) << missing.output;
  EXPECT_TRUE(contains(missing.output, "blobs/ holds 1")) << missing.output;

  // Explicitly allowed: a new, empty database; the blobs stay.
  write_file_bytes(db, "");  // the zero-byte case again
  Basind server({"--data-dir", data.path(), "--allow-new-database"});
  ASSERT_TRUE(server.started());
  EXPECT_TRUE(contains(server.log(), "--allow-new-database: kept " + db + " as " + db + ".lost-"))
      << server.log();
  EXPECT_EQ(list_jobs_count(&server), 0);
  EXPECT_EQ(entries(data.path() + "/blobs").size(), 1u);
  // ... and it works: a new job runs (its blob is uploaded again, deduplicated on disk).
  run_blob_job(&server);
  EXPECT_EQ(list_jobs_count(&server), 1);
}

TEST(DataDir, FreshOrMissingDirectoryStartsWithoutAFlag) {
  TempDir base;
  for (const std::string& dir : {base.path(), base.path() + "/new"}) {
    Basind server({"--data-dir", dir});
    ASSERT_TRUE(server.started());
    EXPECT_TRUE(contains(server.log(), "initialising a new data dir " + dir)) << server.log();
    EXPECT_EQ(list_jobs_count(&server), 0);
    ASSERT_EQ(server.terminate(), 0);
    // The second start opens the database the first one created: no message, no refusal.
    Basind again({"--data-dir", dir});
    ASSERT_TRUE(again.started());
    EXPECT_FALSE(contains(again.log(), "initialising")) << again.log();
  }
}

TEST(DataDir, ForeignFilesWithoutADatabaseAreRefused) {
  TempDir data;
  write_file_bytes(data.path() + "/notes.txt", "not basin's");
  const ProcessResult r = run_basind(serve_args(data.path()));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "other entries: notes.txt")) << r.output;
  EXPECT_TRUE(access((data.path() + "/basin.db").c_str(), F_OK) != 0) << "nothing created";
  EXPECT_EQ(mode_of(data.path()), 0700u) << "mkdtemp's mode, left as it was";

  // A file that is not SQLite where basin.db should be.
  TempDir other;
  write_file_bytes(other.path() + "/basin.db", "garbage, not a database file at all");
  const ProcessResult g = run_basind(serve_args(other.path()));
  EXPECT_NE(g.status, 0) << g.output;
  EXPECT_TRUE(contains(g.output, "is not an SQLite database")) << g.output;
}

TEST(DataDir, DatabaseWalAndBlobsAreOwnerOnlyAndLooserModesAreTightened) {
  TempDir data;
  const std::string d = data.path();
  std::string hex;
  {
    Basind server({"--data-dir", d});
    ASSERT_TRUE(server.started());
    hex = run_blob_job(&server);
    // After writes, while serving: the WAL and its index exist.
    EXPECT_EQ(mode_of(d), 0700u);
    for (const char* f : {"/basin.db", "/basin.db-wal", "/basin.db-shm"}) {
      EXPECT_EQ(mode_of(d + f), 0600u) << f;
    }
    EXPECT_EQ(mode_of(d + "/blobs"), 0700u);
    EXPECT_EQ(mode_of(d + "/tmp"), 0700u);
    EXPECT_EQ(mode_of(d + "/blobs/" + hex), 0600u);
    server.kill9();  // leaves the WAL behind
  }
  // As an older basind (or a careless copy) left them.
  for (const char* f : {"/basin.db", "/basin.db-wal", "/basin.db-shm", "/blobs/"}) {
    ASSERT_EQ(chmod((d + f + (std::string(f) == "/blobs/" ? hex : "")).c_str(), 0644), 0) << f;
  }
  ASSERT_EQ(chmod(d.c_str(), 0755), 0);
  ASSERT_EQ(chmod((d + "/blobs").c_str(), 0755), 0);
  const ProcessResult check = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(check.status, 0) << "loose modes are a warning, not damage:\n" << check.output;
  EXPECT_TRUE(contains(check.output, "warning: basin.db: mode 0644")) << check.output;

  Basind server({"--data-dir", d});
  ASSERT_TRUE(server.started());
  EXPECT_TRUE(contains(server.log(), "tightened permissions in " + d)) << server.log();
  EXPECT_TRUE(contains(server.log(), "basin.db 0644->0600")) << server.log();
  EXPECT_TRUE(contains(server.log(), "1 file(s) in blobs/")) << server.log();
  EXPECT_EQ(mode_of(d), 0700u);
  for (const char* f : {"/basin.db", "/basin.db-wal", "/basin.db-shm"}) {
    EXPECT_EQ(mode_of(d + f), 0600u) << f;
  }
  EXPECT_EQ(mode_of(d + "/blobs"), 0700u);
  EXPECT_EQ(mode_of(d + "/blobs/" + hex), 0600u);
  EXPECT_EQ(list_jobs_count(&server), 1) << "the job survived kill -9 and the chmods";
}

TEST(DataDir, TokensFileReadableByOthersIsWarned) {
  TempDir dir;
  const std::string tokens = write_tokens(dir);
  ASSERT_EQ(chmod(tokens.c_str(), 0644), 0);
  {
    Basind server({"--tokens", tokens});
    ASSERT_TRUE(server.started());
    EXPECT_TRUE(contains(server.log(), "WARNING: --tokens " + tokens + " is readable by every user"))
        << server.log();
    EXPECT_FALSE(contains(server.log(), "INSECURE")) << "loopback: " << server.log();
  }
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  Basind server({"--tokens", tokens});
  ASSERT_TRUE(server.started());
  EXPECT_FALSE(contains(server.log(), "WARNING")) << server.log();
}

TEST(DataDir, TokensOnANonLoopbackAddressWithoutTlsAreWarnedLoudly) {
  TempDir dir;
  const std::string tokens = write_tokens(dir);
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  // All addresses (the test talks to it on loopback only); the later --listen wins.
  Basind server({"--tokens", tokens, "--listen", "0.0.0.0:0"});
  ASSERT_TRUE(server.started());
  EXPECT_TRUE(contains(server.log(), "WARNING: INSECURE: bearer tokens are accepted on 0.0.0.0:0 "
                                     "WITHOUT TLS"))
      << server.log();
  grpc::health::v1::HealthCheckResponse h;
  auto ctx = context();
  EXPECT_TRUE(server.health()->Check(ctx.get(), {}, &h).ok());
}

TEST(DataDir, CheckPassesACleanDirAndNamesEachProblem) {
  TempDir data;
  const std::string d = data.path();
  std::string hex, job;
  {
    Basind server({"--data-dir", d});
    ASSERT_TRUE(server.started());
    hex = run_blob_job(&server, &job);
    ASSERT_EQ(server.terminate(), 0);
  }
  const ProcessResult clean = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(clean.status, 0) << clean.output;
  EXPECT_TRUE(contains(clean.output, "integrity_check ok")) << clean.output;
  EXPECT_TRUE(contains(clean.output, "schema ok")) << clean.output;
  EXPECT_TRUE(contains(clean.output, "jobs: 1 (succeeded 1)")) << clean.output;
  EXPECT_TRUE(contains(clean.output, "blobs: 1 file(s)")) << clean.output;
  EXPECT_TRUE(contains(clean.output, "1 verified")) << clean.output;
  EXPECT_TRUE(contains(clean.output, "basind --check: clean")) << clean.output;

  // A changed byte in the blob.
  const std::string blob = d + "/blobs/" + hex;
  const std::string original = read_file_bytes(blob);
  std::string changed = original;
  changed[changed.size() / 2] ^= 0x01;
  write_file_bytes(blob, changed);
  const ProcessResult corrupt = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(corrupt.status, 1) << corrupt.output;
  EXPECT_TRUE(contains(corrupt.output, "PROBLEM: blobs/" + hex + ": corrupt")) << corrupt.output;
  EXPECT_TRUE(contains(corrupt.output, "PROBLEM: job " + job)) << corrupt.output;
  EXPECT_TRUE(contains(corrupt.output, "whose content is corrupt")) << corrupt.output;

  // The blob gone.
  ASSERT_EQ(unlink(blob.c_str()), 0);
  const ProcessResult missing = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, "PROBLEM: blobs/" + hex + ": recorded for user anonymous"))
      << missing.output;
  EXPECT_TRUE(contains(missing.output, "inputs.blob_id names blob sha256:" + hex +
                                           ", which is missing from blobs/"))
      << missing.output;
  write_file_bytes(blob, original);
  EXPECT_EQ(run_basind({"--check", "--data-dir", d}).status, 0) << "restored";

  // A stray upload is a warning only (basind removes it at start-up).
  write_file_bytes(d + "/tmp/upload-leftover", "partial");
  const ProcessResult stray = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(stray.status, 0) << stray.output;
  EXPECT_TRUE(contains(stray.output, "warning: tmp/upload-leftover: stray temp file")) << stray.output;
  EXPECT_TRUE(contains(stray.output, "temp files: 1")) << stray.output;

  // The database cut in half, then its header overwritten.
  const std::string db = d + "/basin.db";
  const std::string db_bytes = read_file_bytes(db);
  ASSERT_GT(db_bytes.size(), 8192u);
  ASSERT_EQ(truncate(db.c_str(), static_cast<off_t>(db_bytes.size() / 2)), 0);
  const ProcessResult truncated = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(truncated.status, 1) << truncated.output;
  EXPECT_TRUE(contains(truncated.output, "PROBLEM: " + db)) << truncated.output;
  std::string garbage = db_bytes;
  for (size_t i = 0; i < 100; ++i) garbage[i] = 'x';
  write_file_bytes(db, garbage);
  const ProcessResult not_db = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(not_db.status, 1) << not_db.output;
  EXPECT_TRUE(contains(not_db.output, "PROBLEM: " + db + " (" + std::to_string(db_bytes.size()) +
                                          " bytes) is not an SQLite database"))
      << not_db.output;
  write_file_bytes(db, "");
  const ProcessResult empty = run_basind({"--check", "--data-dir", d});
  EXPECT_EQ(empty.status, 1) << empty.output;
  EXPECT_TRUE(contains(empty.output, "PROBLEM: " + db + " is empty (0 bytes)")) << empty.output;

  EXPECT_EQ(run_basind({"--check", "--data-dir", d + "/nope"}).status, 2);
  const ProcessResult usage = run_basind({"--check"});
  EXPECT_NE(usage.status, 0);
  EXPECT_TRUE(contains(usage.output, "--check: needs --data-dir")) << usage.output;
}

}  // namespace
}  // namespace basin::test
