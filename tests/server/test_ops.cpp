// Operations: the Prometheus endpoint and TLS / mutual TLS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "basind_fixture.hpp"

namespace basin::test {
namespace {

TEST(Ops, PrometheusMetrics) {
  Basind server({"--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.started());
  ASSERT_GT(server.metrics_port(), 0);
  auto stub = server.stub();
  v1::SubmitJobRequest sreq;
  *sreq.mutable_request() = to_proto(make_problem(10, 3, 4, 2, Loss::kMse, 51));
  v1::SubmitJobResponse sresp;
  auto ctx = context();
  ASSERT_TRUE(stub->SubmitJob(ctx.get(), sreq, &sresp).ok());
  ASSERT_EQ(wait_final(stub.get(), sresp.job_id()).state(), v1::JOB_STATE_SUCCEEDED);

  const std::string text = http_get_metrics(server.metrics_port());
  EXPECT_EQ(text.rfind("HTTP/1.0 200 OK", 0), 0u) << text;
  for (const char* s : {"basin_queue_depth 0", "basin_jobs{state=\"succeeded\"} 1",
                        "basin_jobs{state=\"queued\"} 0", "basin_jobs_in_memory 1",
                        "basin_job_stage_seconds_sum{stage=\"solve\"}",
                        "basin_job_stage_seconds_count{stage=\"forward\"}",
                        "basin_device_memory_bytes{kind=\"total\""}) {
    EXPECT_NE(text.find(s), std::string::npos) << "missing '" << s << "' in\n" << text;
  }
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Ops, TlsAndMutualTls) {
  if (std::system("command -v openssl > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "openssl is not installed: cannot generate test certificates";
  }
  TempDir dir;
  const std::string d = dir.path();
  const std::string script =
      "cd " + d + " && set -e && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
      "-subj /CN=basin-test-ca 2>/dev/null && "
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj /CN=localhost 2>/dev/null && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem 2>/dev/null && "
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
      "-subj /CN=client 2>/dev/null && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-out client.pem 2>/dev/null";
  ASSERT_EQ(std::system(script.c_str()), 0) << "certificate generation failed";

  Basind server({"--tls-cert", d + "/server.pem", "--tls-key", d + "/server.key",
                 "--tls-client-ca", d + "/ca.pem"});
  ASSERT_TRUE(server.started()) << server.log();
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto call = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = v1::Basin::NewStub(grpc::CreateCustomChannel(server.address(), creds, args));
    v1::GetServerInfoResponse info;
    auto ctx = context("", 10);
    return stub->GetServerInfo(ctx.get(), {}, &info);
  };
  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = slurp(d + "/ca.pem");
  with_cert.pem_private_key = slurp(d + "/client.key");
  with_cert.pem_cert_chain = slurp(d + "/client.pem");
  grpc::Status st = call(grpc::SslCredentials(with_cert));
  EXPECT_TRUE(st.ok()) << st.error_message();

  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = with_cert.pem_root_certs;
  EXPECT_FALSE(call(grpc::SslCredentials(no_cert)).ok()) << "mutual TLS requires a client cert";
  EXPECT_FALSE(call(grpc::InsecureChannelCredentials()).ok()) << "plaintext to a TLS port";
}

}  // namespace
}  // namespace basin::test

#include "reflection_subset.grpc.pb.h"

namespace basin::test {
namespace {

TEST(Ops, ReflectionListsTheServices) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(server.channel());
  auto ctx = context();
  auto stream = stub->ServerReflectionInfo(ctx.get());
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_NE(std::find(names.begin(), names.end(), "basin.v1.Basin"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace basin::test
