// Checkpointed segments of the executor (executor.hpp, "Checkpointed segments"): the graph's cuts,
// recomputing a segment's primals for the examples a pass works on, and gram()'s pass below a
// cut over blocks of examples. docs/ARCHITECTURE.md ("Checkpointed segments") is the design.
#include <algorithm>

#include "basin/error.hpp"
#include "executor.hpp"

namespace basin {

// A cut is a live node whose output is the only batched value computed at or before it that a
// later node reads (the graph's input counts as computed before every node). Segments end at
// cuts; the last one ends at the last live node.
template <class T>
void GraphNetwork<T>::find_segments() {
  const Graph& g = *graph_;
  const auto& nodes = g.nodes();
  const auto& values = g.values();
  segment_.assign(nodes.size(), -1);
  producer_.assign(values.size(), -1);
  for (size_t i = 0; i < nodes.size(); ++i) producer_[static_cast<size_t>(nodes[i].output)] = static_cast<int64_t>(i);
  seg_begin_.clear();
  seg_end_.clear();
  recomputable_.assign(values.size(), 0);
  int64_t reach = last_use_[g.input()];  // the last node reading a batched value computed so far
  int64_t begin = -1, last_live = -1;  // a segment begins at a live node
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live_[i]) continue;
    last_live = static_cast<int64_t>(i);
    if (begin < 0) begin = last_live;
    const int out = nodes[i].output;
    const bool batched = values[out].batched;
    const int64_t i64 = static_cast<int64_t>(i);
    if (batched && out != g.output() && reach <= i64 && last_use_[out] > i64) {
      seg_begin_.push_back(begin);
      seg_end_.push_back(i64 + 1);
      begin = -1;
    }
    if (batched) reach = std::max(reach, last_use_[out]);
  }
  if (begin >= 0) {
    seg_begin_.push_back(begin);
    seg_end_.push_back(last_live + 1);
  }
  for (size_t s = 0; s < seg_begin_.size(); ++s)
    for (int64_t i = seg_begin_[s]; i < seg_end_[s]; ++i) {
      segment_[i] = static_cast<int>(s);
      const int out = nodes[i].output;
      const bool cut = i + 1 == seg_end_[s] && s + 1 < seg_begin_.size();
      if (live_[i] && values[out].batched && !cut && out != g.output()) recomputable_[out] = 1;
    }
  seg_first_.assign(seg_begin_.size(), 0);
  seg_count_.assign(seg_begin_.size(), 0);
  primal_first_.assign(values.size(), 0);
  // A cut value is where a recomputation starts: it is always kept, and so are the unbatched
  // values (computed from parameters and constants alone, parameter-sized) a recomputation reads.
  for (size_t s = 0; s + 1 < seg_begin_.size(); ++s) keep_primal_[nodes[seg_end_[s] - 1].output] = 1;
  for (size_t v = 0; v < values.size(); ++v)
    if (!values[v].batched) keep_primal_[v] = 1;
}

template <class T>
int64_t GraphNetwork<T>::primal_bytes() const {
  const Graph& g = *graph_;
  int64_t total = 0;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const GraphValue& out = g.value(g.nodes()[i].output);
    if (live_[i] && out.batched && keep_primal_[g.nodes()[i].output]) total += n_ * shape_numel(out.shape);
  }
  return total * static_cast<int64_t>(sizeof(T));
}

// Cut value of segment s (the output of its last node), or -1 for the last segment (the output).
template <class T>
int GraphNetwork<T>::cut_value(int s) const {
  if (s < 0 || static_cast<size_t>(s) + 1 >= seg_begin_.size()) return -1;
  return graph_->nodes()[static_cast<size_t>(seg_end_[static_cast<size_t>(s)] - 1)].output;
}

// A cut value is in one of three states: resident for all examples; released (null: a pass of
// gram() freed it, restore_cuts() brings it back); or, below gram()'s split, recomputed with its
// segment block by block (recomputable_).
template <class T>
bool GraphNetwork<T>::released(int v) const {
  return v >= 0 && !recomputable_[static_cast<size_t>(v)] && primal_[static_cast<size_t>(v)].get() == nullptr;
}

template <class T>
void GraphNetwork<T>::compute_segment(int s, int64_t i0, int64_t count, bool with_cut) {
  const Graph& g = *graph_;
  const size_t u = static_cast<size_t>(s);
  const int cut = cut_value(s);
  for (int64_t i = seg_begin_[u]; i < seg_end_[u]; ++i) {
    const int out = g.nodes()[static_cast<size_t>(i)].output;
    // Cut values (unless asked), the output and unbatched values are resident.
    if (!live_[i] || !(recomputable_[out] || (with_cut && out == cut))) continue;
    check_cancel();
    primal_[out] = Buffer<T>(be_, static_cast<size_t>(count * shape_numel(g.value(out).shape)));
    primal_first_[out] = i0;
    OpCall<T> c = call(static_cast<size_t>(i), i0, count);
    ops_[i]->forward(c, c.out);
  }
  seg_first_[u] = i0;
  seg_count_[u] = count;
}

template <class T>
void GraphNetwork<T>::restore_cuts() {
  for (size_t s = 0; s + 1 < seg_begin_.size(); ++s) {
    const int cut = cut_value(static_cast<int>(s));
    if (!released(cut)) continue;
    compute_segment(static_cast<int>(s), 0, n_, true);  // its input cut is resident by now
    if (checkpoint_) drop_segment(static_cast<int>(s));
  }
}

template <class T>
void GraphNetwork<T>::ensure_segment(int s, int64_t i0, int64_t count) {
  if (s < 0) return;
  if (released(cut_value(s)) || released(cut_value(s - 1))) restore_cuts();
  const size_t u = static_cast<size_t>(s);
  if (seg_count_[u] > 0 && seg_first_[u] <= i0 && i0 + count <= seg_first_[u] + seg_count_[u]) return;
  // The segment below first, when its cut value is itself recomputed (below gram()'s split).
  const int in = cut_value(s - 1);
  if (in >= 0 && recomputable_[static_cast<size_t>(in)]) ensure_segment(s - 1, i0, count);
  drop_segment(s);
  compute_segment(s, i0, count, false);
}

template <class T>
void GraphNetwork<T>::drop_segment(int s) {
  const size_t u = static_cast<size_t>(s);
  for (int64_t i = seg_begin_[u]; i < seg_end_[u]; ++i) {
    const int out = graph_->nodes()[static_cast<size_t>(i)].output;
    if (recomputable_[out]) primal_[out].reset();
  }
  seg_count_[u] = 0;
}

template <class T>
void GraphNetwork<T>::keep_all_primals() {
  if (!checkpoint_) return;
  restore_cuts();
  for (size_t s = 0; s < seg_begin_.size(); ++s) ensure_segment(static_cast<int>(s), 0, n_);
  checkpoint_ = false;
}

// The split below which gram() works over blocks of examples: the highest cut where (a) no
// parameter, and no unbatched value computed from one, is read on both sides (its block would be
// a sum over both), (b) the parameters below take at most split_block_bytes_ and 1/4 of G for
// all rows, and (c) the largest cotangent below is at least twice the largest above (the rows'
// cotangents below are what the split saves).
template <class T>
int64_t GraphNetwork<T>::split_node(int64_t r, int64_t* low_params) const {
  if (split_block_bytes_ <= 0 || seg_begin_.size() < 2) return -1;
  const Graph& g = *graph_;
  const auto& nodes = g.nodes();
  const auto& values = g.values();
  const int64_t m = n_ * r, N = num_params(), bytes = static_cast<int64_t>(sizeof(T));
  // shared[c] > 0: some unbatched differentiable value (a parameter, a transposed weight) is read
  // at or before node c and after it (first use ≤ c < last use), by interval counts.
  std::vector<int64_t> first_use(values.size(), -1), shared(nodes.size() + 1, 0);
  for (size_t i = 0; i < nodes.size(); ++i)
    if (live_[i])
      for (int v : nodes[i].inputs)
        if (first_use[v] < 0) first_use[v] = static_cast<int64_t>(i);
  for (size_t v = 0; v < values.size(); ++v)
    if (!values[v].batched && values[v].differentiable && first_use[v] >= 0 && last_use_[v] > first_use[v]) {
      ++shared[static_cast<size_t>(first_use[v])];
      --shared[static_cast<size_t>(last_use_[v])];
    }
  for (size_t i = 1; i < shared.size(); ++i) shared[i] += shared[i - 1];
  // Largest batched value at or above each node (suffix) and below (prefix).
  std::vector<int64_t> above(nodes.size() + 1, 0);
  for (int64_t i = static_cast<int64_t>(nodes.size()) - 1; i >= 0; --i)
    above[i] = std::max(above[i + 1], live_[i] && values[nodes[i].output].batched
                                          ? shape_numel(values[nodes[i].output].shape)
                                          : int64_t(0));
  int64_t best = -1, below_max = shape_numel(g.input_shape()), params_below = 0;
  std::vector<char> counted(values.size(), 0);
  for (size_t s = 0; s + 1 < seg_begin_.size(); ++s) {
    for (int64_t i = seg_begin_[s]; i < seg_end_[s]; ++i) {
      if (!live_[i]) continue;
      const GraphValue& out = values[nodes[i].output];
      if (out.batched) below_max = std::max(below_max, shape_numel(out.shape));
      for (int v : nodes[i].inputs)
        if (param_index_[v] >= 0 && !counted[v]) {
          counted[v] = 1;
          params_below += shape_numel(values[v].shape);
        }
    }
    const int64_t cut = seg_end_[s] - 1;
    if (shared[static_cast<size_t>(cut)] > 0) continue;
    const double low_bytes = double(m) * double(params_below) * double(bytes);
    if (low_bytes > double(split_block_bytes_) || low_bytes * 4 > double(m) * double(N) * double(bytes)) break;
    if (below_max >= 2 * above[static_cast<size_t>(cut) + 1]) {
      best = cut;
      *low_params = params_below;
    }
  }
  return best;
}

// Before gram()'s pass above the split: the segments below it and their cut values (not the
// split's own, which the pass above reads) are freed; the pass below recomputes them block by
// block from the input.
template <class T>
void GraphNetwork<T>::release_below_split(int64_t split) {
  restore_cuts();  // an earlier gram() released them
  const int top = segment_[static_cast<size_t>(split)];
  for (int s = 0; s <= top; ++s) {
    drop_segment(s);
    const int v = cut_value(s);
    if (s < top && v >= 0) {
      recomputable_[v] = 1;
      primal_[v].reset();
    }
  }
}

// The nodes at and below `split` over blocks of examples, seeded by the cut's cotangent for all
// rows (cut_cot, [n × r × cut]): each block's parameter cotangents are its rows of those
// parameters' block B_low [(n·r) × low_params] (columns in parameter order), handed to
// add_block once complete.
template <class T>
void GraphNetwork<T>::gram_below_split(const T* cut_cot, int64_t r, int64_t split, int64_t low_params,
                                       const std::function<void(const Tensor<T>&)>& add_block) {
  const Graph& g = *graph_;
  const auto& nodes = g.nodes();
  const auto& values = g.values();
  const int cut = nodes[static_cast<size_t>(split)].output;
  const int64_t cut_size = shape_numel(values[cut].shape);
  std::vector<int64_t> column(values.size(), -1);  // per parameter below: its first column in B_low
  int64_t c0 = 0, largest = 1;
  for (int64_t i = 0; i <= split; ++i) {
    if (!live_[i]) continue;
    if (values[nodes[i].output].batched) largest = std::max(largest, shape_numel(values[nodes[i].output].shape));
    for (int v : nodes[i].inputs)
      if (param_index_[v] >= 0 && column[v] < 0) {
        column[v] = c0;
        c0 += shape_numel(values[v].shape);
      }
  }
  const int top = segment_[static_cast<size_t>(split)];
  recomputable_[cut] = 1;  // the pass above is done with it
  primal_[cut].reset();
  Buffer<T> low(be_, static_cast<size_t>(n_ * r * low_params));
  // Examples per block: the largest cotangent below for the block's rows within split_pass_bytes_.
  const int64_t per = std::clamp<int64_t>(split_pass_bytes_ / (r * largest * int64_t(sizeof(T))), 1, n_);
  for (int64_t i0 = 0; i0 < n_ && cut_cot != nullptr; i0 += per) {  // none: no cotangent reached the cut
    const int64_t count = std::min(per, n_ - i0), rows = count * r;
    NodeRange range;
    range.hi = split + 1;
    range.seed_value = cut;
    backward(
        cut_cot + i0 * r * cut_size, i0, count, r, Mode::kPerExample,
        [&](size_t t, const Tensor<T>& cot) {
          const int v = g.parameters()[t];
          const int64_t c = cot.size();
          be_.strided_axpby(1, rows, c, T(1), cot.data, c, 0, T(0), low.get() + i0 * r * low_params + column[v],
                            low_params, 0);
        },
        nullptr, nullptr, nullptr, range);
  }
  add_block(Tensor<T>{low.get(), n_, r, Shape{low_params}});
  low.reset();
  // The cut values below are released (restore_cuts brings them back when a pass needs them).
  for (int s = 0; s <= top; ++s) {
    drop_segment(s);
    const int v = cut_value(s);
    if (v >= 0) {
      recomputable_[v] = 0;
      primal_[v].reset();
    }
  }
}

// The members defined here, for both precisions (the rest are instantiated in executor.cpp).
#define BASIN_CHECKPOINTS(T)                                                                             \
  template void GraphNetwork<T>::find_segments();                                                       \
  template int64_t GraphNetwork<T>::primal_bytes() const;                                               \
  template void GraphNetwork<T>::ensure_segment(int, int64_t, int64_t);                                 \
  template int GraphNetwork<T>::cut_value(int) const;                                                   \
  template bool GraphNetwork<T>::released(int) const;                                                   \
  template void GraphNetwork<T>::compute_segment(int, int64_t, int64_t, bool);                          \
  template void GraphNetwork<T>::restore_cuts();                                                        \
  template void GraphNetwork<T>::drop_segment(int);                                                     \
  template void GraphNetwork<T>::keep_all_primals();                                                    \
  template void GraphNetwork<T>::release_below_split(int64_t);                                          \
  template int64_t GraphNetwork<T>::split_node(int64_t, int64_t*) const;                                \
  template void GraphNetwork<T>::gram_below_split(const T*, int64_t, int64_t, int64_t,                  \
                                                  const std::function<void(const Tensor<T>&)>&);
BASIN_CHECKPOINTS(double)
BASIN_CHECKPOINTS(float)
#undef BASIN_CHECKPOINTS

}  // namespace basin
