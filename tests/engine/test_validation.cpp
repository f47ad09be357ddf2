// Every invalid request is refused before any work with the right code and a message that
// names the field and the expected value.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace basin {
namespace {

void expect_error(const AnalysisRequest& r, ErrorCode code, const std::vector<std::string>& words) {
  try {
    analyze(r);
    FAIL() << "expected an error mentioning " << words.front();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

AnalysisRequest good() {
  return test::random_request(test::mlp(3, {4}, 2, Activation::kTanh), 5, Loss::kMse, 1);  // N = 26
}

TEST(Validation, ParameterCount) {
  AnalysisRequest r = good();
  r.params.pop_back();
  expect_error(r, ErrorCode::kInvalidArgument, {"params", "25", "26"});
}

TEST(Validation, InputsShapeAndEmpty) {
  AnalysisRequest r = good();
  r.inputs.push_back(1.0);
  expect_error(r, ErrorCode::kInvalidArgument, {"inputs", "5 × 3"});
  r = good();
  r.num_examples = 0;
  r.inputs.clear();
  r.targets.clear();
  expect_error(r, ErrorCode::kInvalidArgument, {"inputs", "at least one"});
}

TEST(Validation, NonFiniteValuesAreLocated) {
  AnalysisRequest r = good();
  r.params[7] = std::numeric_limits<double>::quiet_NaN();
  expect_error(r, ErrorCode::kInvalidArgument, {"params", "[7]", "NaN"});
  r = good();
  r.inputs[4] = std::numeric_limits<double>::infinity();
  expect_error(r, ErrorCode::kInvalidArgument, {"inputs", "[1, 1]", "infinite"});
  r = good();
  r.targets[3] = -std::numeric_limits<double>::infinity();
  expect_error(r, ErrorCode::kInvalidArgument, {"targets", "[1, 1]"});
}

TEST(Validation, TargetsAndLabels) {
  AnalysisRequest r = good();
  r.targets.resize(4);
  expect_error(r, ErrorCode::kInvalidArgument, {"targets", "5 × 2"});
  r = test::random_request(test::mlp(3, {4}, 2, Activation::kTanh), 5, Loss::kCrossEntropy, 1);
  r.labels[2] = 2;
  expect_error(r, ErrorCode::kInvalidArgument, {"label[2] = 2", "0 <= label < 2"});
  r.labels[2] = -1;
  expect_error(r, ErrorCode::kInvalidArgument, {"label[2] = -1"});
  r.labels.pop_back();
  expect_error(r, ErrorCode::kInvalidArgument, {"labels", "n = 5"});
  r = good();
  r.loss = Loss::kNone;
  expect_error(r, ErrorCode::kInvalidArgument, {"targets", "loss is none"});
}

TEST(Validation, WantNeedsALoss) {
  AnalysisRequest r = good();
  r.loss = Loss::kNone;
  r.targets.clear();
  r.want = Want{true, true, false};
  expect_error(r, ErrorCode::kInvalidArgument, {"ggn", "loss"});
  r.want = Want{false, false, false};
  expect_error(r, ErrorCode::kInvalidArgument, {"want", "nothing"});
  EXPECT_THROW(parse_want("jacobian,spectrum"), Error);
}

TEST(Validation, ModelErrorsNameTheLayer) {
  EXPECT_THROW(parse_model_json("{\"input_dim\": 3, \"layers\": [{\"type\": \"conv2d\"}]}"), Error);
  try {
    parse_model_json("{\"input_dim\": 3, \"layers\": [{\"type\": \"dense\", \"out\": 4}, {\"type\": \"swish\"}]}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers[1].type"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gelu"), std::string::npos) << e.what();
  }
  for (const char* bad : {"{\"input_dim\": 0, \"layers\": [{\"type\": \"dense\", \"out\": 1}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"dense\", \"out\": -2}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"dense\"}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"tanh\"}]}",
                          "{\"input_dim\": 3, \"layers\": []}",
                          "{\"input_dim\": 3.5, \"layers\": [{\"type\": \"dense\", \"out\": 1}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"dense\", \"out\": 1, \"bias\": 1}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"dense\", \"out\": 1, \"units\": 1}]}",
                          "{\"input_dim\": 3, \"layers\": [{\"type\": \"tanh\", \"alpha\": 1}]}",
                          "[1, 2]", "{\"input_dim\": 3,", ""}) {
    try {
      parse_model_json(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("model"), std::string::npos) << e.what();
    }
  }
}

TEST(Validation, ModelJsonRoundTrips) {
  const Model m = parse_model_json(
      "{\"input_dim\": 4, \"layers\": [{\"type\": \"dense\", \"out\": 16}, {\"type\": \"leaky_relu\", \"alpha\": 0.2},"
      " {\"type\": \"dense\", \"out\": 3, \"bias\": false}]}");
  EXPECT_EQ(m.num_params(), 4 * 16 + 16 + 16 * 3);
  EXPECT_EQ(m.output_dim(), 3);
  EXPECT_EQ(model_to_json(parse_model_json(model_to_json(m))), model_to_json(m));
}

TEST(Limits, OverTheLimitIsResourceExhausted) {
  AnalysisRequest r = good();
  r.want = Want{true, true, true};
  r.limits.max_hessian_params = 10;
  expect_error(r, ErrorCode::kResourceExhausted, {"hessian", "26", "10"});
  r = good();
  r.limits.max_dense_dim = 5;
  expect_error(r, ErrorCode::kResourceExhausted, {"dense", "limit"});
  r = good();
  r.limits.max_memory_bytes = 100;
  expect_error(r, ErrorCode::kResourceExhausted, {"memory", "needs about"});
  r = good();
  r.return_jacobian = true;
  r.limits.max_jacobian_bytes = 16;
  expect_error(r, ErrorCode::kResourceExhausted, {"jacobian", "limit"});
  r = good();
  r.rtol = -1;
  expect_error(r, ErrorCode::kInvalidArgument, {"rtol"});
}

TEST(Limits, UserToleranceOverridesTheDefault) {
  AnalysisRequest r = good();
  r.rtol = 0.5;
  const JacobianSpectrum j = *analyze(r).jacobian;
  EXPECT_DOUBLE_EQ(j.tolerance, 0.5 * j.singular_values.front());
  int64_t expected = 0;
  for (double s : j.singular_values) expected += s > j.tolerance;
  EXPECT_EQ(j.rank, expected);
  r.rtol.reset();
  r.atol = 1e9;
  EXPECT_EQ(analyze(r).jacobian->rank, 0);
}

TEST(Device, CudaRequestWithoutGpuIsUnavailableNotACrash) {
  std::string why;
  if (cuda_available(&why)) GTEST_SKIP() << "a CUDA device is present";
  AnalysisRequest r = good();
  r.device = Device::kCuda;
  expect_error(r, ErrorCode::kUnavailable, {"cuda"});
  r.device = Device::kAuto;  // falls back to the CPU
  EXPECT_EQ(analyze(r).backend, "cpu");
}

}  // namespace
}  // namespace basin
