#include "vectors.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "basin/error.hpp"

namespace basin {
namespace {

std::string gib(double bytes) {
  std::ostringstream os;
  os.precision(3);
  if (bytes >= double(1ull << 30)) os << bytes / double(1ull << 30) << " GiB";
  else os << bytes / double(1ull << 20) << " MiB";
  return os.str();
}

// Sign convention, so results are reproducible across runs and backends: the entry of largest
// magnitude of each vector (the first one, on ties) is positive. Returns ±1 for row `j` of a
// row-major [rows×cols] matrix.
double sign_of_row(const std::vector<double>& a, int64_t j, int64_t cols) {
  int64_t best = 0;
  for (int64_t c = 1; c < cols; ++c)
    if (std::fabs(a[j * cols + c]) > std::fabs(a[j * cols + best])) best = c;
  return a[j * cols + best] < 0 ? -1.0 : 1.0;
}

// Rows [first, first + count) of a row-major [·×cols] matrix, as the columns of a [cols×count]
// matrix, each with the sign convention applied.
std::vector<double> rows_as_columns(const std::vector<double>& a, int64_t cols, const std::vector<int64_t>& rows) {
  const int64_t c = static_cast<int64_t>(rows.size());
  std::vector<double> out(static_cast<size_t>(cols * c));
  for (int64_t j = 0; j < c; ++j) {
    const double s = sign_of_row(a, rows[j], cols);
    for (int64_t i = 0; i < cols; ++i) out[i * c + j] = s * a[rows[j] * cols + i];
  }
  return out;
}

std::vector<int64_t> iota(int64_t first, int64_t count) {
  std::vector<int64_t> v(static_cast<size_t>(std::max<int64_t>(count, 0)));
  std::iota(v.begin(), v.end(), first);
  return v;
}

template <class T>
std::vector<double> download(Backend<T>& be, const T* src, size_t count) {
  std::vector<T> host(count);
  if (count) be.download(host.data(), src, count);
  return std::vector<double>(host.begin(), host.end());
}

// Working memory of the SVD with vectors of an m×N matrix: the matrix, V's rows (N of them
// for the full V), U when wanted, the solver's O(p²) work, and the float64 host copies.
double svd_bytes(const AnalysisRequest& r, int64_t m, bool full_v, bool left) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4, N = double(r.num_params()), md = double(m);
  const double p = std::min(md, N), v_rows = full_v ? N : p, u = left ? md * p : 0;
  return (sz + 8) * (v_rows * N + u) + sz * (2 * md * N + 4 * p * p);
}

}  // namespace

VectorsWant parse_vectors(const std::string& list) {
  VectorsWant v;
  std::stringstream ss(list);
  std::string word;
  const std::string expected = "expected a comma-separated list of jacobian_row, jacobian_null, jacobian_left, ggn, hessian";
  while (std::getline(ss, word, ',')) {
    if (word.empty()) continue;
    if (word == "jacobian_row") v.jacobian_row = true;
    else if (word == "jacobian_null") v.jacobian_null = true;
    else if (word == "jacobian_left") v.jacobian_left = true;
    else if (word == "ggn") v.ggn = true;
    else if (word == "hessian") v.hessian = true;
    else invalid_argument("vectors: unknown word '" + word + "'; " + expected);
  }
  if (!v.any()) invalid_argument("vectors: empty; " + expected);
  return v;
}

void validate_vectors(const AnalysisRequest& r, size_t checkpoints) {
  const VectorsWant& v = r.vectors;
  if (!v.any()) return;
  if (v.k < 0) invalid_argument("vectors_k: got " + std::to_string(v.k) + ", expected K >= 1 (or 0 for all vectors)");
  if (checkpoints > 1)
    invalid_argument("vectors: requested for " + std::to_string(checkpoints) +
                     " checkpoints; vectors are returned for one parameter vector at a time (pass one row of --params)");
  if (v.jacobian() && !r.want.jacobian)
    invalid_argument("vectors jacobian_*: needs jacobian in want (the basis is cut at G's reported rank)");
  if (v.ggn && !r.want.ggn) invalid_argument("vectors ggn: needs ggn in want (one vector per GGN eigenvalue)");
  if (v.hessian && !r.want.hessian)
    invalid_argument("vectors hessian: needs hessian in want (the eigenvectors come from the dense Hessian)");

  const int64_t N = r.num_params(), m = r.num_examples * r.output_dim(), p = std::min(m, N);
  const double limit = double(r.limits.max_memory_bytes);
  if ((v.jacobian() || v.ggn) && p > r.limits.max_dense_dim)
    resource_exhausted("vectors: the SVD of G is " + std::to_string(m) + " × " + std::to_string(N) +
                       ", min(n·k, N) = " + std::to_string(p) + " over the dense-solver limit of " +
                       std::to_string(r.limits.max_dense_dim) + "; use fewer examples");
  if (v.jacobian_null) {
    const double need = svd_bytes(r, m, true, v.jacobian_left), thin = svd_bytes(r, m, false, v.jacobian_left);
    if (N > r.limits.max_dense_dim || need > limit) {
      std::ostringstream os;
      os << "vectors jacobian_null: the null-space basis needs the full N × N V of G's SVD (N = " << N
         << ", n·k = " << m << "): about " << gib(need);
      if (N > r.limits.max_dense_dim) os << ", and N is over the dense-solver limit of " << r.limits.max_dense_dim;
      os << "; the memory limit is " << gib(limit) << " (--max-memory). ";
      if (thin <= limit) os << "jacobian_row (rank × N, the thin SVD, about " << gib(thin) << ") fits";
      else os << "not even the row basis (the thin SVD, about " << gib(thin) << ") fits";
      resource_exhausted(os.str());
    }
  } else if (v.jacobian()) {
    const double need = svd_bytes(r, m, false, v.jacobian_left);
    if (need > limit)
      resource_exhausted("vectors jacobian_row/jacobian_left: the SVD of the materialised G (" + std::to_string(m) +
                         " × " + std::to_string(N) + ") needs about " + gib(need) + ", over the memory limit of " +
                         gib(limit) + " (--max-memory); use fewer examples");
  }
  if (v.ggn) {
    const double need = svd_bytes(r, m, m < N, false);
    if (need > limit || (m < N && N > r.limits.max_dense_dim))
      resource_exhausted("vectors ggn: the SVD of the materialised G̃ (" + std::to_string(m) + " × " + std::to_string(N) +
                         ") with N × N vectors needs about " + gib(need) + ", over the memory limit of " + gib(limit) +
                         " (--max-memory)");
  }
  if (v.hessian) {
    const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
    const double need = (6 * sz + 16) * double(N) * double(N);
    if (need > limit)
      resource_exhausted("vectors hessian: the N × N eigenvectors (N = " + std::to_string(N) + ") need about " +
                         gib(need) + " next to H, over the memory limit of " + gib(limit) + " (--max-memory)");
  }
}

template <class T>
std::vector<VectorArray> jacobian_bases(Backend<T>& be, T* g, int64_t m, int64_t N, int64_t rank,
                                        const VectorsWant& want) {
  const int64_t p = std::min(m, N), v_rows = want.jacobian_null ? N : p;
  Buffer<T> vt_dev(be, static_cast<size_t>(v_rows * N)), u_dev;
  if (want.jacobian_left) u_dev = Buffer<T>(be, static_cast<size_t>(m * p));
  be.singular_value_decomposition(m, N, g, u_dev.get(), vt_dev.get(), want.jacobian_null);
  std::vector<double> vt = download(be, vt_dev.get(), vt_dev.size());
  std::vector<double> u = download(be, u_dev.get(), u_dev.size());
  // The sign convention on each v_j, carried to u_j so that G v_j = σ_j u_j still holds.
  for (int64_t j = 0; j < v_rows; ++j) {
    const double s = sign_of_row(vt, j, N);
    if (s > 0) continue;
    for (int64_t c = 0; c < N; ++c) vt[j * N + c] = -vt[j * N + c];
    if (j < p && !u.empty())
      for (int64_t i = 0; i < m; ++i) u[i * p + j] = -u[i * p + j];
  }
  const int64_t kept = want.k > 0 ? std::min(want.k, rank) : rank;
  std::vector<VectorArray> out;
  if (want.jacobian_row) {
    VectorArray a{"jacobian_row_basis", {kept, N}, {}, iota(0, kept), {}};
    a.data.assign(vt.begin(), vt.begin() + kept * N);
    out.push_back(std::move(a));
  }
  if (want.jacobian_null) {
    VectorArray a{"jacobian_null_basis", {N, N - rank}, {}, {}, {}};
    a.data = rows_as_columns(vt, N, iota(rank, N - rank));
    out.push_back(std::move(a));
  }
  if (want.jacobian_left) {
    VectorArray a{"jacobian_left_basis", {m, kept}, std::vector<double>(static_cast<size_t>(m * kept)), iota(0, kept), {}};
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < kept; ++j) a.data[i * kept + j] = u[i * p + j];
    out.push_back(std::move(a));
  }
  return out;
}

template <class T>
VectorArray ggn_eigenvectors(Backend<T>& be, T* g_tilde, int64_t m, int64_t N, int64_t count, int64_t k) {
  const int64_t p = std::min(m, N);
  const bool full = count > p;
  const int64_t v_rows = full ? N : p;
  Buffer<T> vt_dev(be, static_cast<size_t>(v_rows * N));
  be.singular_value_decomposition(m, N, g_tilde, nullptr, vt_dev.get(), full);
  const std::vector<double> vt = download(be, vt_dev.get(), vt_dev.size());
  const int64_t kept = std::min(k > 0 ? std::min(k, count) : count, v_rows);
  const std::vector<int64_t> idx = iota(0, kept);
  return VectorArray{"ggn_eigenvectors", {N, kept}, rows_as_columns(vt, N, idx), idx, {}};
}

VectorArray hessian_eigenvectors(const std::vector<double>& rows, int64_t N, int64_t k) {
  std::vector<int64_t> idx;
  if (k > 0 && 2 * k < N) {
    idx = iota(0, k);
    const std::vector<int64_t> low = iota(N - k, k);
    idx.insert(idx.end(), low.begin(), low.end());
  } else {
    idx = iota(0, N);
  }
  return VectorArray{"hessian_eigenvectors", {N, static_cast<int64_t>(idx.size())}, rows_as_columns(rows, N, idx), idx, {}};
}

template std::vector<VectorArray> jacobian_bases<double>(Backend<double>&, double*, int64_t, int64_t, int64_t,
                                                         const VectorsWant&);
template std::vector<VectorArray> jacobian_bases<float>(Backend<float>&, float*, int64_t, int64_t, int64_t,
                                                        const VectorsWant&);
template VectorArray ggn_eigenvectors<double>(Backend<double>&, double*, int64_t, int64_t, int64_t, int64_t);
template VectorArray ggn_eigenvectors<float>(Backend<float>&, float*, int64_t, int64_t, int64_t, int64_t);

}  // namespace basin
