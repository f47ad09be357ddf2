#include "basind_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "basin/npy.hpp"
#include "basin/wire/proto_convert.hpp"

#ifndef BASIND_PATH
#error "BASIND_PATH must point at the basind executable"
#endif

namespace basin::test {
namespace {

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/basind-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = tmpl;
}

TempDir::~TempDir() { (void)nftw(path_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

Basind::Basind(std::vector<std::string> args) { start(std::move(args)); }

void Basind::start(std::vector<std::string> args) {
  run_dir_ = std::make_unique<TempDir>();
  const std::string port_file = run_dir_->path() + "/ports";
  log_path_ = run_dir_->path() + "/basind.log";
  args.insert(args.begin(), {BASIND_PATH, "--listen", "127.0.0.1:0", "--port-file", port_file});
  // Everything the child needs is prepared before fork(): after fork in a multi-threaded
  // process only async-signal-safe calls are allowed (no malloc).
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(log_fd, 0);
  pid_ = fork();
  if (pid_ == 0) {
    (void)dup2(log_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  (void)close(log_fd);
  ASSERT_GT(pid_, 0) << "fork failed";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    std::ifstream in(port_file);
    if (in >> port_ >> metrics_port_) break;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "basind exited at startup:\n" << read_all(log_path_);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(port_, 0) << "basind did not start:\n" << read_all(log_path_);
}

Basind::~Basind() {
  if (pid_ > 0) {
    if (terminate(std::chrono::seconds(20)) == -1) kill9();
  }
}

std::shared_ptr<grpc::Channel> Basind::channel() const {
  grpc::ChannelArguments ch;
  ch.SetMaxReceiveMessageSize(256 << 20);
  ch.SetMaxSendMessageSize(256 << 20);
  return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), ch);
}

int Basind::terminate(std::chrono::seconds wait) {
  if (pid_ <= 0) return -1;
  (void)kill(pid_, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

void Basind::kill9() {
  if (pid_ <= 0) return;
  (void)kill(pid_, SIGKILL);
  int status = 0;
  (void)waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string Basind::log() const { return read_all(log_path_); }

std::unique_ptr<grpc::ClientContext> context(const std::string& token, double deadline_s) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000)));
  return ctx;
}

AnalysisRequest make_problem(int64_t n, int64_t in, int64_t hidden, int64_t k, Loss loss,
                             uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  AnalysisRequest r;
  r.model.input_dim = in;
  r.model.layers = {Layer::dense(hidden), Layer::act(Activation::kTanh), Layer::dense(k)};
  r.params.resize(static_cast<size_t>(r.model.num_params()));
  for (double& p : r.params) p = 0.5 * normal(rng);
  r.num_examples = n;
  r.inputs.resize(static_cast<size_t>(n * in));
  for (double& x : r.inputs) x = normal(rng);
  r.loss = loss;
  if (loss == Loss::kMse) {
    r.targets.resize(static_cast<size_t>(n * k));
    for (double& y : r.targets) y = normal(rng);
  } else if (loss == Loss::kCrossEntropy) {
    for (int64_t i = 0; i < n; ++i) r.labels.push_back(static_cast<int64_t>(rng() % k));
  }
  r.want.jacobian = true;
  r.want.ggn = loss != Loss::kNone;
  r.want.hessian = loss != Loss::kNone;
  r.device = Device::kCpu;
  return r;
}

v1::AnalyzeRequest to_proto(const AnalysisRequest& request) {
  v1::AnalyzeRequest out;
  wire::request_to_proto(request, &out);
  return out;
}

v1::AnalyzeRequest slow_request(int checkpoints, uint64_t seed) {
  AnalysisRequest r = make_problem(40, 3, 16, 2, Loss::kMse, seed);
  r.want.hessian = false;
  v1::AnalyzeRequest p = to_proto(r);
  const int64_t n_params = r.model.num_params();
  std::vector<double> all;
  for (int b = 0; b < checkpoints; ++b) {
    for (int64_t j = 0; j < n_params; ++j) all.push_back(r.params[j] * (1.0 + 1e-3 * b));
  }
  wire::doubles_to_tensor(all, {checkpoints, n_params}, p.mutable_params()->mutable_tensor());
  return p;
}

void expect_same_result(const AnalysisResult& a, const AnalysisResult& b) {
  auto close = [](const std::vector<double>& x, const std::vector<double>& y, const char* what) {
    ASSERT_EQ(x.size(), y.size()) << what;
    double scale = 1e-300;
    for (double v : x) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(x[i], y[i], 1e-10 * scale) << what << "[" << i << "]";
    }
  };
  EXPECT_EQ(a.num_params, b.num_params);
  EXPECT_EQ(a.num_examples, b.num_examples);
  EXPECT_EQ(a.num_outputs, b.num_outputs);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.dtype, b.dtype);
  close(a.outputs, b.outputs, "outputs");
  ASSERT_EQ(a.loss_value.has_value(), b.loss_value.has_value());
  if (a.loss_value) EXPECT_NEAR(*a.loss_value, *b.loss_value, 1e-12 * std::fabs(*a.loss_value));
  ASSERT_EQ(a.jacobian.has_value(), b.jacobian.has_value());
  if (a.jacobian) {
    close(a.jacobian->singular_values, b.jacobian->singular_values, "jacobian.singular_values");
    EXPECT_EQ(a.jacobian->rank, b.jacobian->rank);
    EXPECT_EQ(a.jacobian->level_set_dim, b.jacobian->level_set_dim);
    EXPECT_EQ(a.jacobian->method, b.jacobian->method);
  }
  ASSERT_EQ(a.ggn.has_value(), b.ggn.has_value());
  if (a.ggn) {
    close(a.ggn->eigenvalues, b.ggn->eigenvalues, "ggn.eigenvalues");
    EXPECT_EQ(a.ggn->rank, b.ggn->rank);
  }
  ASSERT_EQ(a.hessian.has_value(), b.hessian.has_value());
  if (a.hessian) {
    close(a.hessian->eigenvalues, b.hessian->eigenvalues, "hessian.eigenvalues");
    EXPECT_EQ(a.hessian->rank, b.hessian->rank);
    EXPECT_NEAR(a.hessian->residual_rel, b.hessian->residual_rel, 1e-9);
  }
}

std::string npy_f64(const std::vector<int64_t>& shape, const std::vector<double>& values) {
  std::vector<uint8_t> bytes = serialize_npy(make_npy_f64(shape, values));
  return std::string(bytes.begin(), bytes.end());
}

std::string write_tokens(const TempDir& dir) {
  const std::string path = dir.path() + "/tokens";
  std::ofstream out(path);
  out << "# token user\ntok-alice alice\ntok-bob bob\n";
  return path;
}

std::string http_get_metrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // loopback only
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
  (void)send(fd, req.data(), req.size(), 0);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

double metric_value(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + key.size(), nullptr);
}

std::vector<v1::Job> watch_all(v1::Basin::Stub* stub, const std::string& id) {
  v1::WatchJobRequest w;
  w.set_job_id(id);
  auto ctx = context();
  auto reader = stub->WatchJob(ctx.get(), w);
  v1::Job update;
  std::vector<v1::Job> updates;
  while (reader->Read(&update)) updates.push_back(update);
  const grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  return updates;
}

v1::Job wait_final(v1::Basin::Stub* stub, const std::string& id, const std::string& token,
                   std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  v1::Job job;
  while (std::chrono::steady_clock::now() < until) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    req.set_include_result(true);
    auto ctx = context(token);
    grpc::Status st = stub->GetJob(ctx.get(), req, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok()) return job;
    if (job.state() != v1::JOB_STATE_QUEUED && job.state() != v1::JOB_STATE_RUNNING) return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "job " << id << " did not finish in time";
  return job;
}

}  // namespace basin::test
