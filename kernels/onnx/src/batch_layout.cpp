// The example axis inside an ONNX value's full shape (batch_layout.hpp).
#include "batch_layout.hpp"

namespace basin::onnx_import_detail {
namespace {

int64_t product(const Shape& s, int64_t from, int64_t to) {
  int64_t p = 1;
  for (int64_t d = from; d < to; ++d) p *= s[static_cast<size_t>(d)];
  return p;
}

}  // namespace

std::vector<OnnxAxis> onnx_axes(const Shape& g, const BatchLayout& l) {
  const int64_t r = static_cast<int64_t>(g.size());
  std::vector<OnnxAxis> axes;
  for (int64_t d = 0; d < l.pos - l.outer; ++d) axes.push_back({d, 1, false});
  axes.push_back({l.pos - l.outer, l.outer + l.inner, true});
  for (int64_t d = l.pos + l.inner; d < r; ++d) axes.push_back({d, 1, false});
  return axes;
}

int64_t onnx_rank(const Shape& g, const BatchLayout& l) {
  return static_cast<int64_t>(g.size()) + 1 - l.outer - l.inner;
}

int64_t batch_factor(const Shape& g, const BatchLayout& l) { return product(g, l.pos - l.outer, l.pos + l.inner); }

std::string layout_string(const Shape& g, const BatchLayout& l) {
  std::string s = "[";
  const std::vector<OnnxAxis> axes = onnx_axes(g, l);
  for (size_t a = 0; a < axes.size(); ++a) {
    if (a) s += ", ";
    if (!axes[a].batch) {
      s += std::to_string(g[static_cast<size_t>(axes[a].first)]);
      continue;
    }
    std::string part;
    for (int64_t d = axes[a].first; d < l.pos; ++d) part += std::to_string(g[static_cast<size_t>(d)]) + "·";
    part += "n";
    for (int64_t d = l.pos; d < l.pos + l.inner; ++d) part += "·" + std::to_string(g[static_cast<size_t>(d)]);
    s += part;
  }
  return s + "]";
}

Permuted permute_layout(const Shape& g, const BatchLayout& l, const std::vector<int64_t>& perm) {
  const std::vector<OnnxAxis> axes = onnx_axes(g, l);
  Permuted out;
  for (int64_t p : perm) {
    const OnnxAxis& a = axes[static_cast<size_t>(p)];
    if (!a.batch) {
      out.graph_perm.push_back(a.first);
      continue;
    }
    for (int64_t d = a.first; d < l.pos; ++d) out.graph_perm.push_back(d);
    out.layout.pos = static_cast<int64_t>(out.graph_perm.size());
    out.layout.outer = l.outer;
    out.layout.inner = l.inner;
    for (int64_t d = l.pos; d < l.pos + l.inner; ++d) out.graph_perm.push_back(d);
  }
  return out;
}

std::optional<std::pair<Shape, BatchLayout>> reshape_layout(const Shape& g, const BatchLayout& l,
                                                             const std::vector<TargetDim>& target, std::string* why) {
  const int64_t r = static_cast<int64_t>(g.size());
  const int64_t before = product(g, 0, l.pos), after = product(g, l.pos, r);
  int64_t j = -1;
  for (size_t d = 0; d < target.size(); ++d)
    if (target[d].coef > 0) {
      if (j >= 0) {
        *why = "two of its axes would hold the batch";
        return std::nullopt;
      }
      j = static_cast<int64_t>(d);
    }
  if (j < 0) {
    *why = "no axis of it holds the batch";
    return std::nullopt;
  }
  int64_t lead = 1, trail = 1;  // stop past the example's size (no overflow)
  for (int64_t d = 0; d < j && lead <= before; ++d) lead *= target[static_cast<size_t>(d)].size;
  for (size_t d = static_cast<size_t>(j) + 1; d < target.size() && trail <= after; ++d) trail *= target[d].size;
  const int64_t c = target[static_cast<size_t>(j)].coef;
  if (lead <= 0 || trail <= 0 || before % lead != 0 || after % trail != 0 ||
      (before / lead) * (after / trail) != c) {
    *why = "its axes before and after the batch's do not split one example's entries into whole blocks "
           "(it would interleave examples)";
    return std::nullopt;
  }
  const int64_t co = before / lead, ci = after / trail;
  Shape out;
  for (int64_t d = 0; d < j; ++d) out.push_back(target[static_cast<size_t>(d)].size);
  BatchLayout lo;
  if (co > 1) out.push_back(co), lo.outer = 1;
  lo.pos = static_cast<int64_t>(out.size());
  if (ci > 1) out.push_back(ci), lo.inner = 1;
  for (size_t d = static_cast<size_t>(j) + 1; d < target.size(); ++d) out.push_back(target[d].size);
  return std::make_pair(out, lo);
}

std::optional<Shape> broadcast_operand(const Shape& dims, const Shape& g, const BatchLayout& l, std::string* why) {
  const std::vector<OnnxAxis> axes = onnx_axes(g, l);
  if (dims.size() > axes.size()) {
    *why = "it has more axes than the batched operand " + layout_string(g, l);
    return std::nullopt;
  }
  Shape out(g.size(), 1);
  const size_t off = axes.size() - dims.size();
  for (size_t k = 0; k < dims.size(); ++k) {
    const OnnxAxis& a = axes[off + k];
    if (a.batch) {
      if (dims[k] != 1) {
        *why = "it has " + std::to_string(dims[k]) + " entries along the batch axis of " + layout_string(g, l);
        return std::nullopt;
      }
      continue;
    }
    out[static_cast<size_t>(a.first)] = dims[k];
  }
  return out;
}

}  // namespace basin::onnx_import_detail
