// Deep models: the layer limit, linear validation and run time, and cancellation between layers.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "basin/analysis.hpp"
#include "basin/error.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

// dense(w) -> `acts` activations -> dense(1), n examples of `in` features.
AnalysisRequest deep_request(int64_t acts, int64_t n = 3, int64_t in = 2, int64_t w = 3) {
  AnalysisRequest r;
  r.model.input_dim = in;
  r.model.layers.push_back(Layer::dense(w));
  for (int64_t i = 0; i < acts; ++i) r.model.layers.push_back(Layer::act(i % 2 ? Activation::kTanh : Activation::kIdentity));
  r.model.layers.push_back(Layer::dense(1));
  r.num_examples = n;
  const int64_t N = r.model.num_params();
  for (int64_t j = 0; j < N; ++j) r.params.push_back(0.3 * std::sin(1.0 + double(j)));
  for (int64_t j = 0; j < n * in; ++j) r.inputs.push_back(std::cos(0.7 * double(j)));
  r.loss = Loss::kNone;
  r.want = Want{true, false, false};
  r.limits.max_layers = 1 << 30;
  return r;
}

TEST(DeepModels, OverTheLayerLimitIsResourceExhaustedNamingTheLimit) {
  AnalysisRequest r = deep_request(20000);
  r.limits.max_layers = 10000;
  try {
    validate_request(r);
    FAIL() << "a 20002-layer model passed a 10000-layer limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    const std::string m = e.what();
    EXPECT_NE(m.find("20002 layers"), std::string::npos) << m;
    EXPECT_NE(m.find("max_layers"), std::string::npos) << m;
    EXPECT_NE(m.find("10000"), std::string::npos) << m;
  }
  EXPECT_EQ(Limits().max_layers, 10000);
}

// Structural, not timed: the layers visited by width computations grow linearly with L. The
// quadratic version (width_after(i) inside a loop over i) visited ~L²/2.
TEST(DeepModels, ValidationAndRunVisitLinearlyManyLayers) {
  for (const int64_t acts : {20000, 200000}) {
    const AnalysisRequest r = deep_request(acts);
    const int64_t L = static_cast<int64_t>(r.model.layers.size());
    const int64_t before = layer_visits();
    validate_request(r);
    EXPECT_LE(layer_visits() - before, 8 * L) << "validate_request of " << L << " layers";
  }
  // A full analysis (forward, back-propagation, Gram, solve) of a deep, narrow model.
  const AnalysisRequest r = deep_request(20000);
  const int64_t L = static_cast<int64_t>(r.model.layers.size());
  const int64_t before = layer_visits();
  const AnalysisResult res = analyze(r);
  EXPECT_LE(layer_visits() - before, 16 * L) << "analyze of " << L << " layers";
  // Checked against the same model with the identity layers removed: identity is a no-op and
  // tanh∘… is unchanged, so the spectra must agree.
  AnalysisRequest shallow = r;
  shallow.model.layers.clear();
  for (const Layer& l : r.model.layers)
    if (l.kind == Layer::Kind::kDense || l.activation != Activation::kIdentity) shallow.model.layers.push_back(l);
  const AnalysisResult ref = analyze(shallow);
  ASSERT_EQ(res.jacobian->singular_values.size(), ref.jacobian->singular_values.size());
  for (size_t i = 0; i < ref.jacobian->singular_values.size(); ++i)
    EXPECT_NEAR(res.jacobian->singular_values[i], ref.jacobian->singular_values[i],
                1e-9 * ref.jacobian->singular_values[0]);
}

TEST(DeepModels, DescribeOfALongModelIsShort) {
  const AnalysisRequest r = deep_request(100000);
  const std::string d = describe(r.model);
  EXPECT_LT(d.size(), 400u) << d;
  EXPECT_NE(d.find("more layers"), std::string::npos) << d;
  // And so is the params error that quotes it.
  AnalysisRequest bad = r;
  bad.params.pop_back();
  try {
    validate_request(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 600u);
  }
}

// The cancel flag stops a run inside its per-layer loops, not after them.
TEST(DeepModels, CancelStopsADeepRunBetweenLayers) {
  AnalysisRequest r = deep_request(100000, 8, 2, 8);
  r.loss = Loss::kMse;
  r.targets.assign(8, 0.5);
  r.want = Want{true, true, true};  // forward, Gram, and the R-op passes: 33 blocks × 2L layers
  std::atomic<bool> cancel{false};
  std::atomic<bool> stopped{false};
  ErrorCode code = ErrorCode::kInternal;
  RunControl control;
  control.cancel = &cancel;
  std::atomic<bool> forward{false};
  control.on_progress = [&](Stage s, double) { forward = forward || s == Stage::kForward; };
  std::thread t([&] {
    try {
      (void)analyze(r, control);
    } catch (const Error& e) {
      code = e.code();
    }
    stopped = true;
  });
  // Cancel in the forward pass; it must stop within a bounded wait (a forward pass with no
  // check between layers, O(L²) as it was, ran for minutes at this depth).
  for (int i = 0; i < 4000 && !forward; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  cancel = true;
  for (int i = 0; i < 3000 && !stopped; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(stopped.load()) << "the run did not stop within 30 s of the cancel";
  t.join();
  EXPECT_EQ(code, ErrorCode::kCancelled);
}

}  // namespace
}  // namespace basin
