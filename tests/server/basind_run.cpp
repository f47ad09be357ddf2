#include "basind_run.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace basin::test {

ProcessResult run_basind(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  TempDir run_dir;
  const std::string out_path = run_dir.path() + "/output";
  std::vector<std::string> argv_s = {BASIND_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // Prepared before fork(): only async-signal-safe calls are allowed in the child.
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  ProcessResult r;
  const int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    (void)dup2(fd, 1);
    (void)dup2(fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  (void)close(fd);
  if (pid < 0) return r;
  const auto until = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool done = false;
  while (!done && std::chrono::steady_clock::now() < until) {
    done = waitpid(pid, &status, WNOHANG) == pid;
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!done) {
    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
  } else {
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  r.output = read_file_bytes(out_path);
  return r;
}

std::string upload_blob(v1::Basin::Stub* stub, const std::string& content, grpc::Status* status,
                        double deadline_s, const std::string& token) {
  auto ctx = context(token, deadline_s);
  v1::UploadBlobResponse resp;
  auto writer = stub->UploadBlob(ctx.get(), &resp);
  v1::UploadBlobRequest msg;
  msg.set_chunk(content);
  (void)writer->Write(msg);
  (void)writer->WritesDone();
  const grpc::Status st = writer->Finish();
  if (status != nullptr) *status = st;
  return st.ok() ? resp.blob_id() : "";
}

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace basin::test
