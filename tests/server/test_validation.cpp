// Bad input: every failure is a status naming the field, and the server keeps serving.
#include <cmath>
#include <limits>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"

namespace basin::test {
namespace {

struct Case {
  std::string name;
  std::function<void(v1::AnalyzeRequest*)> mutate;
  grpc::StatusCode code;
  std::vector<std::string> message_has;  // substrings the message must contain
};

TEST(Validation, BadInputsNameTheFieldAndExpectedValue) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const AnalysisRequest good = make_problem(6, 3, 4, 2, Loss::kMse, 11);
  const std::vector<Case> cases = {
      {"params of the wrong length",
       [](v1::AnalyzeRequest* r) {
         wire::doubles_to_tensor(std::vector<double>(7, 0.1), {7},
                                 r->mutable_params()->mutable_tensor());
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"params.shape", "[26]"}},
      {"inputs of the wrong width",
       [](v1::AnalyzeRequest* r) {
         wire::doubles_to_tensor(std::vector<double>(12, 0.1), {6, 2},
                                 r->mutable_inputs()->mutable_tensor());
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"inputs.shape", "[n, 3]"}},
      {"byte count that does not match the shape",
       [](v1::AnalyzeRequest* r) {
         std::string* d = r->mutable_inputs()->mutable_tensor()->mutable_data();
         d->resize(d->size() - 3);
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"inputs.tensor.data", "expected 144 bytes"}},
      {"unset dtype",
       [](v1::AnalyzeRequest* r) {
         r->mutable_targets()->mutable_tensor()->set_dtype(v1::DTYPE_UNSPECIFIED);
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"targets.tensor.dtype"}},
      {"NaN in the inputs",
       [](v1::AnalyzeRequest* r) {
         double nan = std::numeric_limits<double>::quiet_NaN();
         std::memcpy(r->mutable_inputs()->mutable_tensor()->mutable_data()->data() + 8, &nan, 8);
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"inputs", "element 1", "NaN"}},
      {"Inf in the params",
       [](v1::AnalyzeRequest* r) {
         double inf = std::numeric_limits<double>::infinity();
         std::memcpy(r->mutable_params()->mutable_tensor()->mutable_data()->data(), &inf, 8);
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"params", "element 0", "infinite"}},
      {"unknown layer",
       [](v1::AnalyzeRequest* r) { r->mutable_model()->mutable_layers(1)->set_type("swish9"); },
       grpc::StatusCode::INVALID_ARGUMENT, {"model.layers[1].type", "swish9"}},
      {"negative dense width",
       [](v1::AnalyzeRequest* r) { r->mutable_model()->mutable_layers(0)->set_out(-2); },
       grpc::StatusCode::INVALID_ARGUMENT, {"model.layers[0].out"}},
      // A well-formed id of a blob nobody uploaded: an entity the request refers to does not
      // exist (for this caller) -> NOT_FOUND, naming the field and what was expected.
      {"unknown blob id",
       [](v1::AnalyzeRequest* r) {
         r->mutable_inputs()->set_blob_id("sha256:" + std::string(64, 'a'));
       },
       grpc::StatusCode::NOT_FOUND,
       {"inputs.blob_id", "unknown blob 'sha256:aaaa", "expected the id of a blob you uploaded"}},
      {"unknown params blob id (bare hex)",
       [](v1::AnalyzeRequest* r) { r->mutable_params()->set_blob_id(std::string(64, 'b')); },
       grpc::StatusCode::NOT_FOUND, {"params.blob_id", "unknown blob", "UploadBlob"}},
      {"unknown onnx_blob_id",
       [](v1::AnalyzeRequest* r) { r->set_onnx_blob_id("sha256:" + std::string(64, 'c')); },
       grpc::StatusCode::NOT_FOUND, {"onnx_blob_id", "unknown blob", "UploadBlob"}},
      {"malformed blob id",
       [](v1::AnalyzeRequest* r) { r->mutable_inputs()->set_blob_id("../../etc/passwd"); },
       grpc::StatusCode::INVALID_ARGUMENT, {"inputs.blob_id", "sha256:<64"}},
      {"targets of the wrong shape",
       [](v1::AnalyzeRequest* r) {
         wire::doubles_to_tensor(std::vector<double>(6, 0.0), {6},
                                 r->mutable_targets()->mutable_tensor());
       },
       grpc::StatusCode::INVALID_ARGUMENT, {"targets.shape", "[6, 2]"}},
      {"unknown enum value",
       [](v1::AnalyzeRequest* r) { r->set_loss(static_cast<v1::Loss>(42)); },
       grpc::StatusCode::INVALID_ARGUMENT, {"loss", "42"}},
      {"missing model",
       [](v1::AnalyzeRequest* r) { r->clear_model(); },
       grpc::StatusCode::INVALID_ARGUMENT, {"model"}},
      {"negative shape",
       [](v1::AnalyzeRequest* r) { r->mutable_inputs()->mutable_tensor()->set_shape(0, -6); },
       grpc::StatusCode::INVALID_ARGUMENT, {"inputs.tensor.shape[0]"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::AnalyzeRequest req = to_proto(good);
    c.mutate(&req);
    v1::AnalyzeResponse resp;
    auto ctx = context();
    grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
    EXPECT_EQ(st.error_code(), c.code) << st.error_message();
    for (const std::string& s : c.message_has) {
      EXPECT_NE(st.error_message().find(s), std::string::npos)
          << "message '" << st.error_message() << "' should contain '" << s << "'";
    }
    // The same checks guard SubmitJob, with the field path inside SubmitJobRequest.
    v1::SubmitJobRequest sreq;
    *sreq.mutable_request() = req;
    v1::SubmitJobResponse sresp;
    auto sctx = context();
    grpc::Status sst = stub->SubmitJob(sctx.get(), sreq, &sresp);
    EXPECT_EQ(sst.error_code(), c.code) << sst.error_message();
    EXPECT_EQ(sst.error_message().rfind("request.", 0), 0u) << sst.error_message();
    for (const std::string& s : c.message_has) {
      EXPECT_NE(sst.error_message().find(s), std::string::npos)
          << "message '" << sst.error_message() << "' should contain '" << s << "'";
    }
  }
  // Still serving after all of that.
  v1::AnalyzeResponse resp;
  auto ctx = context();
  EXPECT_TRUE(stub->Analyze(ctx.get(), to_proto(good), &resp).ok());
}

TEST(Validation, OverLimitsAreResourceExhausted) {
  Basind server({"--max-message-bytes", "5000000", "--max-hessian-params", "10"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  {
    // A message over --max-message-bytes: refused by gRPC before it is parsed.
    AnalysisRequest big = make_problem(300000, 3, 2, 1, Loss::kNone, 5);
    big.want = Want{};
    v1::AnalyzeResponse resp;
    auto ctx = context();
    grpc::Status st = stub->Analyze(ctx.get(), to_proto(big), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  }
  {
    // The exact Hessian of more parameters than --max-hessian-params: the engine's limit.
    v1::AnalyzeResponse resp;
    auto ctx = context();
    grpc::Status st =
        stub->Analyze(ctx.get(), to_proto(make_problem(6, 3, 4, 2, Loss::kMse, 5)), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
    EXPECT_NE(st.error_message().find("hessian"), std::string::npos) << st.error_message();
  }
  {
    // ... and the server keeps serving requests within the limits.
    AnalysisRequest ok = make_problem(6, 3, 4, 2, Loss::kMse, 5);
    ok.want.hessian = false;
    v1::AnalyzeResponse resp;
    auto ctx = context();
    grpc::Status st = stub->Analyze(ctx.get(), to_proto(ok), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
}

}  // namespace
}  // namespace basin::test
