// The short human-readable report printed without --json.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "analyze_args.hpp"

namespace basin::cli {
namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// First and last few values of a spectrum: "12.3 4.5 1.2 … 3e-05 1e-07".
std::string ends(const std::vector<double>& v, size_t each = 4) {
  std::ostringstream os;
  if (v.size() <= 2 * each) {
    for (size_t i = 0; i < v.size(); ++i) os << (i ? " " : "") << fmt(v[i]);
    return os.str();
  }
  for (size_t i = 0; i < each; ++i) os << fmt(v[i]) << " ";
  os << "...";
  for (size_t i = v.size() - each; i < v.size(); ++i) os << " " << fmt(v[i]);
  return os.str();
}

// "          bound: rank ≤ B (why)" under a spectrum.
std::string bound_line(const RankBound& b) {
  return "          bound: rank <= " + std::to_string(b.rank_at_most) + " (" + b.why + ")" +
         (b.exact ? " [exact]" : "") + "\n";
}

}  // namespace

namespace {
// One line per parameter tensor: name, shape, rank of its column block of G out of its size,
// its share of ‖G‖²_F, and the Hessian block's rank when it was computed.
std::string per_parameter_table(const std::vector<ParameterSpectrum>& tensors) {
  size_t width = 4;
  for (const ParameterSpectrum& p : tensors) width = std::max(width, p.name.size());
  std::ostringstream os;
  os << "per parameter tensor (rank of G's column block / count, share of |G|_F^2):\n";
  for (const ParameterSpectrum& p : tensors) {
    std::string shape;
    for (size_t d = 0; d < p.shape.size(); ++d) shape += (d ? "x" : "") + std::to_string(p.shape[d]);
    std::ostringstream line;
    line << "          " << p.name << std::string(width - p.name.size() + 2, ' ') << shape
         << std::string(shape.size() < 10 ? 10 - shape.size() : 1, ' ') << "rank " << p.jacobian.rank << "/" << p.count
         << "  share " << fmt(p.gram_trace_fraction);
    if (p.hessian_block) line << "  hessian block rank " << p.hessian_block->rank;
    os << line.str() << "\n";
  }
  return os.str();
}
}  // namespace

std::string summary(const AnalysisRequest& req, const AnalysisResult& r) {
  std::ostringstream os;
  os << "model     " << describe(req.model) << "  (N = " << r.num_params << " parameters)\n";
  os << "data      n = " << r.num_examples << " examples, k = " << r.num_outputs << " outputs (n*k = "
     << r.num_examples * r.num_outputs << ")\n";
  os << "backend   " << r.backend << " (" << r.device << "), " << r.dtype << "\n";
  if (r.loss_value)
    os << "loss      " << r.loss << " (" << r.reduction << ") = " << fmt(*r.loss_value) << ", |grad| = " << fmt(*r.grad_norm)
       << "\n";
  if (r.jacobian) {
    const JacobianSpectrum& j = *r.jacobian;
    os << "jacobian  rank " << j.rank << " of " << j.singular_values.size() << " singular values (tolerance "
       << fmt(j.tolerance) << (j.gap ? ", gap at the cut " + fmt(*j.gap) : std::string()) << ", method " << j.method
       << ")\n";
    if (!j.refined_from.empty())
      os << "          (" << j.refined_from << " found values below its resolution; rank decided by the SVD of "
         << (j.method == "tsqr" ? "G's QR factor R, built blockwise by TSQR" : "G") << ")\n";
    if (j.gap && *j.gap < 1e3)
      os << "          note: the gap at the cut is small, so the rank depends on the tolerance (--rtol/--atol)\n";
    os << "          level set (behaviour manifold) dimension N - rank = " << j.level_set_dim << "\n";
    os << "          sigma: " << ends(j.singular_values) << "\n";
    os << bound_line(j.bound);
  }
  if (r.ggn) {
    const GgnSpectrum& g = *r.ggn;
    os << "ggn       rank " << g.rank << " (tolerance " << fmt(g.tolerance)
       << (g.gap ? ", gap at the cut " + fmt(*g.gap) : std::string()) << ", method " << g.method
       << (g.refined_from.empty() ? std::string() : ", refined from " + g.refined_from) << ")\n";
    os << "          eigenvalues: " << ends(g.eigenvalues) << "\n";
    os << bound_line(g.bound);
  }
  if (r.hessian) {
    const HessianSpectrum& h = *r.hessian;
    os << "hessian   rank " << h.rank << ", |H - GGN|_F / |H|_F = " << fmt(h.residual_rel) << "\n";
    os << "          eigenvalues: " << ends(h.eigenvalues) << "\n";
    os << "          residual eigenvalues: " << ends(h.residual_eigenvalues) << "\n";
    os << bound_line(h.bound);
  }
  // Matrix-free spectra (issue 12).
  for (const auto& [name, e] : {std::pair{"hessian top", &r.hessian_top}, {"hessian bottom", &r.hessian_bottom},
                                {"ggn top", &r.ggn_top}, {"ggn bottom", &r.ggn_bottom}})
    if (*e) {
      double worst = 0;
      for (double x : (*e)->residual_norms) worst = std::max(worst, x);
      os << name << ": " << ends((*e)->eigenvalues) << "\n          " << ((*e)->converged ? "converged" : "NOT converged")
         << ", max residual " << fmt(worst) << ", " << (*e)->matvecs << " products, method " << (*e)->method << "\n";
    }
  for (const auto& [name, t] : {std::pair{"hessian trace", &r.hessian_trace}, {"ggn trace", &r.ggn_trace}})
    if (*t)
      os << name << ": " << fmt((*t)->estimate) << " ± " << fmt((*t)->std_error) << " (s.e., " << (*t)->probes
         << " probes, method " << (*t)->method << ")\n";
  for (const auto& [name, d] : {std::pair{"hessian density", &r.hessian_density}, {"ggn density", &r.ggn_density}})
    if (*d)
      os << name << ": " << (*d)->probes << " probes × " << (*d)->steps << " steps (method " << (*d)->method
         << "; nodes and weights in --json)\n";
  if (!r.per_parameter.empty()) os << per_parameter_table(r.per_parameter);
  os << "time      forward " << fmt(r.timings.forward_ms) << " ms, jacobian " << fmt(r.timings.jacobian_ms)
     << " ms, solve " << fmt(r.timings.solve_ms) << " ms";
  if (r.hessian) os << ", hessian " << fmt(r.timings.hessian_ms) << " ms";
  os << "\n";
  return os.str();
}

}  // namespace basin::cli
