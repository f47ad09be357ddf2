// Rank bounds: what the architecture and the data imply about rank(G), rank(GGN), rank(H).
//
// Notation: dense layers l = 1..L (in order), z_l its output [n × d_l], ā_l = [a_{l−1}; 1] its
// input with the bias coordinate, G̃ = SᵀG with rank(S_i) = ρ_i per example (ρ_i = k for G and an
// MSE GGN, #{c : p_ic > 0} − 1 for a cross-entropy GGN). Facts used, each proved where it is used:
//
// (A) Zero columns. Column (o, q) of G for W_l is δ_{(i,c),o}·a_{i,q} over all rows, its bias
//     column δ_{(i,c),o}, where δ = ∂f/∂z_l = (∂f/∂a_l)·φ'_chain(z_l) (the derivative of the
//     activations between dense l and l+1, composed). A unit o with φ'_chain(z_io) = 0 on every
//     example ("insensitive", a dead ReLU) zeroes its d_in weight columns and its bias column; an
//     input coordinate q with a_iq = 0 on every example ("silent": a zero input feature, a dead
//     ReLU's output) zeroes its d_out weight columns. rank(G) ≤ N − (number of such columns).
//     If every unit of dense l+1 is insensitive, δ_l = φ'·(δ_{l+1} W_{l+1}) = 0: all of dense l is.
// (B) Factoring per example. For the parameters θ_S of dense layers a..b and any l' ≥ b,
//     ∂f_i/∂θ_S = (∂f_i/∂z_{l'})(∂z_{l'}/∂θ_S), and ∂f_i/∂z_{l',u} = 0 for units inactive on
//     example i (φ'_chain = 0). So the rows of G̃ for example i restricted to θ_S,
//     S_iᵀ ∂f_i/∂θ_S, have rank ≤ min(ρ_i, ω_i(b)), ω_i(b) = min_{l' ≥ b} (active units of z_{l'}
//     on example i) — the narrowest layer after the block, counted per example (a bottleneck).
//     Summed over examples: rank(G̃_S) ≤ P(b) = Σ_i min(ρ_i, ω_i(b)).
// (C) Kronecker structure. Row (i, c) of G̃_l is δ̃_(i,c) ⊗ ā_i with δ̃ ∈ rowspace(Δ̃_l),
//     ā_i ∈ rowspace(Ā_l), so rank(G̃_l) ≤ rank(Δ̃_l)·rank(Ā_l) ≤ min(P(l), live outputs)·
//     rank(Ā_l); for the first layer rank(Ā_1) = rank([X 1]) (X 0 columns count nothing).
// (D) Column blocks. rank([G_1 … G_m]) ≤ Σ rank(G_j) for any partition of the columns; the best
//     partition into blocks of consecutive dense layers, each bounded by min(P(b), Σ_l its layer
//     bounds), is found by dynamic programming. The single block {1..L} gives min(n·k, N).
// (E) Deep linear networks (every activation the identity): f(X) = A X (+ c 1ᵀ) with
//     A = W_L⋯W_1 of rank ≤ min(M_1 … M_{L−1}). With r = rank(X), K = k, q = min(r, K, M_i), the
//     set {A X} is the K × r matrices of rank ≤ q (in the coordinates of rowspace X), a variety of
//     dimension q(r + K − q); the differential of a polynomial map has rank ≤ the dimension of
//     its image's closure everywhere and equal to it on a dense open set of θ. So without biases
//     rank(G) = q(r + K − q) for generic weights — Singh, Bachmann and Hofmann, "Analytic insights
//     into structure and rank of neural network Hessian maps" (NeurIPS 2021), for the outer-product
//     Hessian (the MSE GGN ∝ GᵀG). With biases the image is {A X + c 1ᵀ}: dimension ≤
//     q(r + K − q) + K and ≤ K·rank([X 1]); equal to q(r + K − q) + K when the last layer has a
//     bias (c is free) and 1 ∉ rowspace X (rank([X 1]) = r + 1), where (A X, c) ↦ A X + c 1ᵀ is
//     injective. The cross-entropy GGN only gets the bound (rank(SᵀG) ≤ rank(G)).
// (F) Hessian rows. H = GGN + R is symmetric; its row for θ_p vanishes when ∂L/∂θ_p ≡ 0 to
//     second order along every direction: for incoming weights/bias of a unit with φ'_chain = 0
//     and φ''_chain = 0 on every example (a dead ReLU: R{g_z} = φ''R{z}g_a + φ'R{g_a} = 0), and for
//     outgoing weights of a unit with a = 0 and φ'_chain = 0 (R{a} = φ'R{z} = 0), and for inputs
//     that are zero data. rank(H) ≤ N − (zero rows). Cross-entropy with k = 1 is ℓ ≡ 0: H = 0.
#include "rank_bounds.hpp"

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace basin {
namespace {

struct DenseBounds {
  int64_t d_in = 0, d_out = 0;
  bool bias = false;
  std::vector<int64_t> active;   // per example: units of z_l with φ'_chain ≠ 0
  std::vector<char> insensitive;  // per unit: φ'_chain = 0 on every example (G)
  std::vector<char> insensitive_h;  // … and φ''_chain = 0 (H)
  std::vector<char> silent_in;    // per input coordinate: a = 0 on every example (G)
  std::vector<char> silent_in_h;  // … and constant in θ (H)
  int64_t input_rank = -1;        // rank(Ā_l) when computed (first layer), else -1
};

int64_t count(const std::vector<char>& v) { return std::count(v.begin(), v.end(), char(1)); }

// Derivatives of the composed activations φ_m∘…∘φ_1 at z, by (g∘h)' = g'(h)h',
// (g∘h)'' = g''(h)h'² + g'(h)h''. `inputs[j]` is the value entering φ_j (the engine's own).
template <class T>
void chain_derivatives(const std::vector<ActivationFn<T>>& fns, const std::vector<const double*>& inputs, size_t at,
                       double* d1, double* d2) {
  T first = T(1), second = T(0);
  for (size_t j = 0; j < fns.size(); ++j) {
    const T x = static_cast<T>(inputs[j][at]);
    const T f1 = fns[j].first(x), f2 = fns[j].second(x);
    second = f2 * first * first + f1 * second;
    first = f1 * first;
  }
  *d1 = double(first);
  *d2 = double(second);
}

template <class T>
std::vector<DenseBounds> analyse_layers(const RankBoundInputs& in) {
  const Model& model = *in.model;
  const int64_t n = in.num_examples, L = static_cast<int64_t>(model.layers.size());
  std::vector<DenseBounds> dense;
  std::vector<int64_t> dense_layer;
  for (int64_t i = 0; i < L; ++i)
    if (model.layers[i].kind == Layer::Kind::kDense) dense_layer.push_back(i);
  for (size_t j = 0; j < dense_layer.size(); ++j) {
    const int64_t li = dense_layer[j];
    const int64_t next = j + 1 < dense_layer.size() ? dense_layer[j + 1] : L;  // first layer after the chain
    DenseBounds d;
    d.d_in = model.width_after(li - 1);
    d.d_out = model.layers[li].out;
    d.bias = model.layers[li].bias;
    std::vector<ActivationFn<T>> fns;
    std::vector<std::vector<double>> values;  // act[i] entering each activation
    for (int64_t i = li + 1; i < next; ++i) {
      fns.push_back(ActivationFn<T>{model.layers[i].activation, T(model.layers[i].alpha)});
      values.push_back(in.activation(i));
    }
    std::vector<const double*> inputs;
    for (const auto& v : values) inputs.push_back(v.data());
    d.active.assign(static_cast<size_t>(n), 0);
    d.insensitive.assign(static_cast<size_t>(d.d_out), 1);
    d.insensitive_h.assign(static_cast<size_t>(d.d_out), 1);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t u = 0; u < d.d_out; ++u) {
        double d1 = 1, d2 = 0;
        if (!fns.empty()) chain_derivatives(fns, inputs, static_cast<size_t>(e * d.d_out + u), &d1, &d2);
        if (d1 != 0) {
          ++d.active[e];
          d.insensitive[u] = 0;
        }
        if (d1 != 0 || d2 != 0) d.insensitive_h[u] = 0;
      }
    // Inputs of this layer: act[li]. Silent where exactly 0 on every example; for the Hessian
    // also constant in θ: data (before the first dense layer), or a unit the previous chain
    // made insensitive (R{a} = φ'_chain R{z} = 0).
    const std::vector<double> a = in.activation(li);
    d.silent_in.assign(static_cast<size_t>(d.d_in), 1);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t q = 0; q < d.d_in; ++q)
        if (a[e * d.d_in + q] != 0) d.silent_in[q] = 0;
    d.silent_in_h = d.silent_in;
    if (j > 0)
      for (int64_t q = 0; q < d.d_in; ++q) d.silent_in_h[q] = d.silent_in[q] && dense[j - 1].insensitive[q];
    if (j == 0) {  // rank([X 1]) (X: the data entering the first dense layer)
      const int64_t cols = d.d_in + (d.bias ? 1 : 0);
      std::vector<double> xb(static_cast<size_t>(n * cols), 1.0);
      for (int64_t e = 0; e < n; ++e)
        for (int64_t q = 0; q < d.d_in; ++q) xb[e * cols + q] = a[e * d.d_in + q];
      d.input_rank = host_matrix_rank(xb, n, cols);
    }
    dense.push_back(std::move(d));
  }
  // (A): a layer whose every unit is insensitive makes the layer before it insensitive.
  for (size_t j = dense.size(); j-- > 1;) {
    if (count(dense[j].insensitive) == dense[j].d_out)
      std::fill(dense[j - 1].insensitive.begin(), dense[j - 1].insensitive.end(), char(1));
    if (count(dense[j].insensitive_h) == dense[j].d_out)
      std::fill(dense[j - 1].insensitive_h.begin(), dense[j - 1].insensitive_h.end(), char(1));
  }
  return dense;
}

// Zero columns of G (or rows of H) of one dense layer, given its insensitive units O and silent
// inputs Q: |O|·(d_in + bias) + |Q|·(d_out − |O|).
int64_t zeroed(const DenseBounds& d, bool hessian) {
  const int64_t o = count(hessian ? d.insensitive_h : d.insensitive), q = count(hessian ? d.silent_in_h : d.silent_in);
  return o * (d.d_in + (d.bias ? 1 : 0)) + q * (d.d_out - o);
}

std::string zero_reason(const std::vector<DenseBounds>& dense, bool hessian, int64_t n) {
  int64_t units = 0, silent_hidden = 0;
  for (size_t j = 0; j < dense.size(); ++j) {
    units += count(hessian ? dense[j].insensitive_h : dense[j].insensitive);
    if (j > 0) {
      for (int64_t q = 0; q < dense[j].d_in; ++q)
        silent_hidden += (hessian ? dense[j].silent_in_h[q] : dense[j].silent_in[q]) && !dense[j - 1].insensitive[q];
    }
  }
  const int64_t features = count(dense.front().silent_in);
  std::ostringstream os;
  const char* sep = "";
  if (units > 0) {
    os << units << " unit" << (units == 1 ? "" : "s") << " inactive on all " << n << " examples";
    sep = ", ";
  }
  if (silent_hidden > 0) {
    os << sep << silent_hidden << " unit" << (silent_hidden == 1 ? "" : "s") << " outputting 0 on every example";
    sep = ", ";
  }
  if (features > 0) os << sep << features << " input feature" << (features == 1 ? "" : "s") << " zero on every example";
  return os.str();
}

// The bound of rank(G̃) for per-example factor ranks ρ_i, by (A)–(D).
RankBound factor_bound(const std::vector<DenseBounds>& dense, const std::vector<int64_t>& rho, int64_t n, int64_t k,
                       int64_t N, const char* what) {
  const int64_t L = static_cast<int64_t>(dense.size());
  // ω_i(l) = min over l' ≥ l of the active units on example i; P(l) = Σ_i min(ρ_i, ω_i(l)).
  std::vector<int64_t> omega(static_cast<size_t>(n), std::numeric_limits<int64_t>::max());
  std::vector<int64_t> P(static_cast<size_t>(L)), narrowest(static_cast<size_t>(L));
  std::vector<char> width_binds(static_cast<size_t>(L), 0);
  for (int64_t l = L - 1; l >= 0; --l) {
    int64_t sum = 0, binds = 0;
    for (int64_t e = 0; e < n; ++e) {
      omega[e] = std::min(omega[e], dense[l].active[e]);
      sum += std::min(rho[e], omega[e]);
      binds += omega[e] < rho[e];
    }
    P[l] = sum;
    width_binds[l] = binds > 0;
    narrowest[l] = *std::min_element(omega.begin(), omega.end());
  }
  // Per-layer bounds (A), (B), (C).
  std::vector<int64_t> layer(static_cast<size_t>(L));
  std::vector<std::string> layer_why(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    const DenseBounds& d = dense[l];
    const int64_t live_out = d.d_out - count(d.insensitive), live_in = d.d_in - count(d.silent_in);
    const int64_t cols = live_out * (live_in + (d.bias ? 1 : 0));
    const int64_t in_rank = d.input_rank >= 0 ? d.input_rank : std::min(n, live_in + (d.bias ? 1 : 0));
    const int64_t kron = std::min(P[l], live_out) * in_rank;
    layer[l] = std::min({cols, kron, P[l]});
    std::ostringstream os;
    if (layer[l] == cols) os << cols << " nonzero parameter columns";
    else if (layer[l] == kron && d.input_rank >= 0)
      os << "rank(Δ)·rank([X" << (d.bias ? " 1" : "") << "]) ≤ " << std::min(P[l], live_out) << "·" << in_rank;
    else if (layer[l] == kron) os << "rank(Δ)·rank(inputs) ≤ " << std::min(P[l], live_out) << "·" << in_rank;
    else os << "per-example rank summed over examples";
    layer_why[l] = os.str();
  }
  // (D): best partition into consecutive blocks [a, b].
  const int64_t inf = std::numeric_limits<int64_t>::max() / 4;
  std::vector<int64_t> best(static_cast<size_t>(L + 1), inf), from(static_cast<size_t>(L + 1), 0);
  best[0] = 0;
  for (int64_t b = 0; b < L; ++b) {
    int64_t sum = 0;
    for (int64_t a = b; a >= 0; --a) {
      sum += layer[a];
      const int64_t v = best[a] + std::min(P[b], sum);
      if (v <= best[b + 1]) {  // ties: the larger block (simpler reason)
        best[b + 1] = v;
        from[b + 1] = a;
      }
    }
  }
  RankBound out;
  out.rank_at_most = best[L];
  std::vector<std::pair<int64_t, int64_t>> blocks;
  for (int64_t b = L; b > 0; b = from[b]) blocks.emplace_back(from[b], b - 1);
  std::reverse(blocks.begin(), blocks.end());
  int64_t zero_cols = 0;
  bool all_columns = true;
  for (int64_t l = 0; l < L; ++l) {
    zero_cols += zeroed(dense[l], false);
    const DenseBounds& d = dense[l];
    const int64_t cols =
        (d.d_out - count(d.insensitive)) * (d.d_in - count(d.silent_in) + (d.bias ? 1 : 0));
    all_columns = all_columns && layer[l] == cols;
  }
  // Why: the whole network as one block, or the blocks of the best partition.
  auto rows_phrase = [&](int64_t b) {
    std::ostringstream os;
    int64_t sum_rho = 0;
    bool all_k = true, all_k1 = true;
    for (int64_t e = 0; e < n; ++e) {
      sum_rho += rho[e];
      all_k = all_k && rho[e] == k;
      all_k1 = all_k1 && rho[e] == k - 1;
    }
    if (!width_binds[b]) {
      if (all_k) os << "n·k = " << n << "·" << k << " = " << P[b] << " rows of " << what;
      else if (all_k1)
        os << "n·(k−1) = " << n << "·" << k - 1 << " = " << P[b]
           << ": each example's cross-entropy Hessian diag p − p pᵀ has rank k − 1";
      else os << "Σ_i rank(M_i) = " << P[b] << ": cross-entropy's diag p − p pᵀ has rank (#classes with p > 0) − 1";
    } else {
      os << P[b] << ": each example's Jacobian factors through the narrowest layer at or after dense layer " << b + 1
         << " (its units active on each example, as few as " << narrowest[b] << ")";
    }
    return os.str();
  };
  std::ostringstream why;
  if (blocks.size() == 1 && best[L] == P[L - 1]) {
    why << rows_phrase(L - 1);
  } else if (blocks.size() == 1 && all_columns) {
    if (zero_cols == 0) why << "N = " << N << " parameters";
    else why << "N − " << zero_cols << " = " << best[L] << ": " << zero_cols << " columns of " << what << " are zero ("
             << zero_reason(dense, false, n) << ")";
  } else {
    why << "sum over blocks of dense layers = " << best[L] << ": ";
    for (size_t j = 0; j < blocks.size(); ++j) {
      const auto [a, b] = blocks[j];
      int64_t sum = 0;
      for (int64_t l = a; l <= b; ++l) sum += layer[l];
      why << (j ? "; " : "") << "dense layer" << (a == b ? " " : "s ") << a + 1;
      if (a != b) why << "–" << b + 1;
      if (P[b] < sum) {
        why << " ≤ " << rows_phrase(b);
      } else {
        why << " ≤ " << sum;
        if (a == b) why << " (" << layer_why[a] << ")";
        else {
          why << " (";
          for (int64_t l = a; l <= b; ++l) why << (l > a ? ", " : "") << layer_why[l];
          why << ")";
        }
      }
    }
    if (zero_cols > 0) why << "; " << zero_reason(dense, false, n);
  }
  out.why = why.str();
  return out;
}

}  // namespace

int64_t host_matrix_rank(const std::vector<double>& a, int64_t rows, int64_t cols) {
  const double small = double(std::min(rows, cols)), large = double(std::max(rows, cols));
  if (small * small * large > 2e9) return -1;
  if (rows == 0 || cols == 0) return 0;
  std::vector<double> copy(a);
  std::vector<double> s(static_cast<size_t>(std::min(rows, cols)));
  // Row-major rows × cols is column-major cols × rows: the same singular values.
  if (LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', cols, rows, copy.data(), cols, s.data(), nullptr, 1, nullptr, 1) != 0)
    return -1;
  const double tol = s.front() * large * std::numeric_limits<double>::epsilon();
  return std::count_if(s.begin(), s.end(), [&](double v) { return v > tol; });
}

RankBounds graph_rank_bounds(int64_t n, int64_t k, int64_t N, Loss loss, const std::vector<int64_t>& factor_ranks) {
  // Only the sizes: rank(G) ≤ min(n·k, N); rank(G̃) ≤ min(Σ_i rank(M_i), N); rank(H) ≤ N. The
  // layer-wise bounds of a chain (dead units, bottlenecks) are not derived for general graphs.
  RankBounds out;
  auto sizes = [&](int64_t rows, const char* what, const std::string& rows_why) {
    RankBound b;
    b.rank_at_most = std::min(rows, N);
    b.why = std::string(what) + " is " + rows_why + " × N = " + std::to_string(rows) + " × " + std::to_string(N) +
            ": rank ≤ min(" + std::to_string(rows) + ", " + std::to_string(N) + ")";
    return b;
  };
  out.jacobian = sizes(n * k, "G", "(n·k)");
  if (!factor_ranks.empty()) {
    int64_t rows = 0;
    for (int64_t r : factor_ranks) rows += r;
    out.ggn = sizes(rows, "G̃ = SᵀG", "(Σ_i rank M_i)");
    if (loss == Loss::kMse) out.ggn = out.jacobian;
  }
  if (loss == Loss::kCrossEntropy && k == 1) {
    out.ggn = {0, "cross-entropy with one output: the loss is identically 0, so M = 0 and GGN = 0", true};
    out.hessian = {0, "cross-entropy with one output: the loss is identically 0, so H = 0", true};
  } else {
    out.hessian = {N, "N = " + std::to_string(N) + " parameters", false};
  }
  return out;
}

RankBounds rank_bounds(const RankBoundInputs& in) {
  const Model& model = *in.model;
  const int64_t n = in.num_examples, k = model.output_dim(), N = model.num_params();
  const std::vector<DenseBounds> dense =
      in.dtype == DType::kFloat32 ? analyse_layers<float>(in) : analyse_layers<double>(in);
  RankBounds out;
  out.jacobian = factor_bound(dense, std::vector<int64_t>(static_cast<size_t>(n), k), n, k, N, "G");
  if (!in.factor_ranks.empty()) out.ggn = factor_bound(dense, in.factor_ranks, n, k, N, "G̃ = SᵀG");
  if (in.loss == Loss::kMse) out.ggn = out.jacobian;  // GGN = (2/(n·k))·GᵀG (or 2·GᵀG): same rank

  // (E) deep linear networks.
  bool linear = true;
  for (const Layer& l : model.layers)
    if (l.kind == Layer::Kind::kActivation && l.activation != Activation::kIdentity) linear = false;
  const int64_t r = dense.front().input_rank;  // rank([X 1]) with a first-layer bias, else rank(X)
  if (linear && r >= 0) {
    bool any_bias = false;
    for (const DenseBounds& d : dense) any_bias = any_bias || d.bias;
    const std::vector<double> x = in.activation(0);
    const int64_t rank_x = dense.front().bias ? host_matrix_rank(x, n, model.input_dim) : r;
    int64_t q = std::min(rank_x, k);
    std::ostringstream widths;
    for (size_t j = 0; j + 1 < dense.size(); ++j) {
      q = std::min(q, dense[j].d_out);
      widths << (j ? ", " : "") << dense[j].d_out;
    }
    if (rank_x >= 0) {
      int64_t formula = q * (rank_x + k - q);
      bool exact = true;
      std::ostringstream why;
      why << "deep linear network: q(r + K − q) = " << q << "·(" << rank_x << " + " << k << " − " << q
          << ") with r = rank(X) = " << rank_x << ", K = " << k << ", q = min(r, K"
          << (dense.size() > 1 ? ", hidden widths " + widths.str() : std::string()) << ") = " << q;
      if (any_bias) {
        // With biases: f(X) = A X + c 1ᵀ; see (E).
        const int64_t rank_x1 = host_matrix_rank([&] {
          std::vector<double> xb(static_cast<size_t>(n * (model.input_dim + 1)), 1.0);
          for (int64_t e = 0; e < n; ++e)
            for (int64_t c = 0; c < model.input_dim; ++c) xb[e * (model.input_dim + 1) + c] = x[e * model.input_dim + c];
          return xb;
        }(), n, model.input_dim + 1);
        formula = std::min(formula + k, k * rank_x1);
        exact = dense.back().bias && rank_x1 == rank_x + 1;
        why << ", + K for the biases (rank([X 1]) = " << rank_x1 << ")";
      }
      why << " (Singh, Bachmann & Hofmann, NeurIPS 2021)";
      auto apply = [&](RankBound& b, bool can_be_exact) {
        if (formula > b.rank_at_most) return;
        b.exact = can_be_exact && exact && formula <= b.rank_at_most;
        b.rank_at_most = formula;
        b.why = why.str() + (b.exact ? ", equality for generic weights" : "");
      };
      apply(out.jacobian, true);
      if (!in.factor_ranks.empty()) apply(out.ggn, in.loss == Loss::kMse);
    }
  }
  if (!in.factor_ranks.empty() && in.loss == Loss::kCrossEntropy && k == 1) {
    out.ggn = {0, "cross-entropy with one output: the loss is identically 0, so M = 0 and GGN = 0", true};
  }

  // (F) the Hessian.
  int64_t zero_rows = 0;
  for (const DenseBounds& d : dense) zero_rows += zeroed(d, true);
  if (in.loss == Loss::kCrossEntropy && k == 1) {
    out.hessian = {0, "cross-entropy with one output: the loss is identically 0, so H = 0", true};
  } else if (zero_rows > 0) {
    std::ostringstream why;
    why << "N − " << zero_rows << " = " << N - zero_rows << ": " << zero_rows << " rows of H are zero ("
        << zero_reason(dense, true, n) << ")";
    out.hessian = {N - zero_rows, why.str(), false};
  } else {
    out.hessian = {N, "N = " + std::to_string(N) + " parameters", false};
  }
  return out;
}

}  // namespace basin
