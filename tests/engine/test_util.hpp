// Shared helpers for the engine tests: random models, parameters and data.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "loss.hpp"
#include "chain_network.hpp"

namespace basin::test {

inline std::vector<double> random_vector(size_t count, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(count);
  for (double& x : v) x = normal(rng);
  return v;
}

// input_dim → [dense(w) → act]* → dense(k)
inline Model mlp(int64_t input_dim, std::vector<int64_t> hidden, int64_t k, Activation act, bool bias = true,
                 double alpha = 0.1) {
  Model m;
  m.input_dim = input_dim;
  for (int64_t w : hidden) {
    m.layers.push_back(Layer::dense(w, bias));
    m.layers.push_back(Layer::act(act, alpha));
  }
  m.layers.push_back(Layer::dense(k, bias));
  return m;
}

inline AnalysisRequest random_request(const Model& model, int64_t n, Loss loss, uint64_t seed) {
  std::mt19937_64 rng(seed);
  AnalysisRequest r;
  r.model = model;
  r.num_examples = n;
  r.params = random_vector(static_cast<size_t>(model.num_params()), rng, 0.6);
  r.inputs = random_vector(static_cast<size_t>(n * model.input_dim), rng);
  r.loss = loss;
  r.device = Device::kCpu;
  const int64_t k = model.output_dim();
  if (loss == Loss::kMse) r.targets = random_vector(static_cast<size_t>(n * k), rng);
  if (loss == Loss::kCrossEntropy) {
    std::uniform_int_distribution<int64_t> label(0, k - 1);
    for (int64_t i = 0; i < n; ++i) r.labels.push_back(label(rng));
  }
  return r;
}

// Outputs f(X; θ) [n × k] through the engine's own forward pass.
inline std::vector<double> forward(const Model& model, const std::vector<double>& params,
                                   const std::vector<double>& inputs, int64_t n) {
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, model, params, inputs, n, nullptr);
  net.forward();
  return net.outputs();
}

// ∇θ L at `params` through the engine's back-propagation.
inline std::vector<double> gradient_at(const AnalysisRequest& r, const std::vector<double>& params) {
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, r.model, params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const LossTerms t = loss_terms(r.loss, r.reduction, net.outputs(), r.num_examples, r.model.output_dim(), r.targets, r.labels);
  return net.gradient(t.dloss_df, false);
}

inline std::vector<double> identity_seeds(int64_t n, int64_t k) {
  std::vector<double> s(static_cast<size_t>(n * k * k), 0.0);
  for (int64_t row = 0; row < n * k; ++row) s[row * k + row % k] = 1.0;
  return s;
}

template <class T>
std::vector<double> download(Backend<T>& be, const Buffer<T>& b) {
  std::vector<T> host(b.size());
  be.download(host.data(), b.get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

// G [(n·k) × N] itself, materialised by the engine's Network.
inline std::vector<double> materialised_jacobian(const AnalysisRequest& r) {
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, r.model, r.params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const int64_t k = r.model.output_dim();
  return download(*be, net.jacobian(identity_seeds(r.num_examples, k), k));
}

// softmax of row i of logits [n × k].
inline std::vector<double> softmax_row(const std::vector<double>& f, int64_t i, int64_t k) {
  double mx = -1e300, z = 0;
  for (int64_t c = 0; c < k; ++c) mx = std::max(mx, f[i * k + c]);
  std::vector<double> p(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) z += (p[c] = std::exp(f[i * k + c] - mx));
  for (double& v : p) v /= z;
  return p;
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// The cross-entropy GGN Σ_i J_iᵀ M_i J_i [N×N] with M_i = (diag p_i − p_i p_iᵀ)/n built from the
// softmax of the outputs f [n×k] and G [(n·k)×N] -- independent of the engine's factor S_i.
inline std::vector<double> explicit_cross_entropy_ggn(const std::vector<double>& f, const std::vector<double>& g,
                                                      int64_t n, int64_t k, int64_t N) {
  std::vector<double> ggn(static_cast<size_t>(N * N), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double mx = -1e300, z = 0;
    for (int64_t c = 0; c < k; ++c) mx = std::max(mx, f[i * k + c]);
    std::vector<double> p(k);
    for (int64_t c = 0; c < k; ++c) z += (p[c] = std::exp(f[i * k + c] - mx));
    for (double& v : p) v /= z;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        const double mab = ((a == b ? p[a] : 0.0) - p[a] * p[b]) / double(n);
        for (int64_t s = 0; s < N; ++s)
          for (int64_t t = 0; t < N; ++t) ggn[s * N + t] += g[(i * k + a) * N + s] * mab * g[(i * k + b) * N + t];
      }
  }
  return ggn;
}

// The same for a cross-entropy request, from G materialised by the Network at r.params.
inline std::vector<double> explicit_cross_entropy_ggn(const AnalysisRequest& r) {
  return explicit_cross_entropy_ggn(forward(r.model, r.params, r.inputs, r.num_examples), materialised_jacobian(r),
                                    r.num_examples, r.model.output_dim(), r.model.num_params());
}

const Activation kAllActivations[] = {Activation::kIdentity, Activation::kRelu,    Activation::kLeakyRelu,
                                      Activation::kTanh,     Activation::kSigmoid, Activation::kGelu,
                                      Activation::kSoftplus, Activation::kSilu};

}  // namespace basin::test
