// The interface every primitive op implements, and the three families most ops belong to.
//
// docs/ARCHITECTURE.md ("Ops") is the design. The executor (graph/executor.cpp) runs four passes
// over the graph; an op takes part in each through one method:
//   forward  out = f(in…)                                   primal values
//   jvp      ṫ_out += Σ_j ∂f/∂in_j · ṫ_j                    forward mode (directions in θ)
//   vjp      ḡ_j  += (∂f/∂in_j)ᵀ · ḡ_out                     reverse mode (rows of G, gradients)
//   rvjp     ġ_j  += (∂f/∂in_j)ᵀ ġ_out + Σ_l ∂²f/∂in_j∂in_l [ḡ_out, ṫ_l]
//                                                           forward-over-reverse (Hessian rows)
//
// Tensors carry two leading axes besides their shape (see Tensor below): the example axis E and
// the direction axis R (R rows per example: the k outputs of G, the columns of S_i, a block of
// Hessian directions). E == 1 means "the same for every example" (parameters, constants and what
// is computed from them alone); R == 1 "the same for every direction" (primal values).
//
// THE BROADCAST CONTRACT (every method of every op): conceptually loop over every e < E_max and
// r < R_max, where E_max and R_max are the largest E and R among the inputs and the output;
// an input with E == 1 (R == 1) is used for every e (r); the output ACCUMULATES (+=) — except
// forward(), which overwrites — and when the output has E == 1 while E_max > 1 the results of
// all examples are summed into it (a parameter's cotangent summed over the data). Outputs
// always have R == R_max. Methods never allocate on the host per element and never touch host
// memory: everything goes through the backend (Backend primitives, OpKernels).
//
// A cotangent or tangent with data == nullptr is zero; a requested output (ḡ_j, ġ_j) with
// data == nullptr is not wanted (a constant input, or the structured Gram path took it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "basin/op_kernels.hpp"

namespace basin {

template <class T>
struct Tensor {
  T* data = nullptr;
  int64_t E = 1;  // examples (1: shared by all)
  int64_t R = 1;  // directions per example (1: shared by all)
  Shape shape;    // per-example shape (unbatched: the full shape)
  int64_t size() const { return shape_numel(shape); }               // elements of one (e, r)
  int64_t count() const { return E * R * size(); }                  // elements in all
  T* at(int64_t e, int64_t r) const { return data + (e * R + r) * size(); }
  explicit operator bool() const { return data != nullptr; }
};
template <class T>
using CTensor = Tensor<T>;  // read-only use (the type is the same; the name documents intent)

// What a node's op is called with: the backend, its op kernels, the node, and the primal values
// of its inputs and output for the examples of this pass (batched ones sliced to the pass's
// examples, E = that count; unbatched E = 1). `out` is filled by forward() and read by the rest.
template <class T>
struct OpCall {
  Backend<T>& be;
  OpKernels<T>& kernels;
  const GraphNode& node;
  std::vector<Tensor<T>> in;
  Tensor<T> out;
};

template <class T>
class Op {
 public:
  virtual ~Op() = default;
  virtual void forward(const OpCall<T>& c, Tensor<T> out) = 0;
  virtual void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& tangents, Tensor<T> out_tangent) = 0;
  virtual void vjp(const OpCall<T>& c, const Tensor<T>& gout, const std::vector<Tensor<T>>& gin) = 0;
  virtual void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& tangents, const Tensor<T>& gout,
                    const Tensor<T>& dgout, const std::vector<Tensor<T>>& gin) = 0;
  // False for ops whose output is treated as a constant (a stop-gradient: the max that Softmax
  // subtracts, shape arithmetic). The executor then never calls jvp/vjp/rvjp.
  virtual bool differentiable() const { return true; }
  // The structured Gram of a dense layer (docs/ARCHITECTURE.md "Structured Gram"): when input
  // `param_slot` is a parameter used by this node alone and its per-example Jacobian block for
  // cotangent rows Δ = ḡ_out is the outer product δ ⊗ a_e, returns the input slot whose primal
  // is `a` (per-example shape [d_in]); -1 otherwise (the block is materialised).
  virtual int dense_factor_input(int param_slot) const { (void)param_slot; return -1; }
  // With a dense factor: the input slot of the layer's bias (its block is δ itself, whose Gram
  // the structured form gets for free as the "+1" of AAᵀ + 1), or -1.
  virtual int dense_bias_input() const { return -1; }
  // Whether jvp, vjp, rvjp (or the dense factor / parameter-row hooks above and below) read the
  // primal of input `slot` (c.in[slot].data). The executor
  // frees, after the forward pass, every value that no differentiable consumer reads
  // (docs/ARCHITECTURE.md "The executor"); an op that reads a primal must say so.
  virtual bool reads_primal(int slot) const { (void)slot; return true; }
  // Part of a vjp: the cotangent of input `slot` (a parameter) restricted to the rows
  // [begin, end) of its leading axis — columns [begin·rest, end·rest) of its per-example block —
  // accumulated into gin (its shape's leading axis end − begin). The Gram sums B Bᵀ over such
  // column ranges, so a large block is never whole (docs/ARCHITECTURE.md "Structured Gram").
  // Called only where has_param_rows(c, slot); it reads the primals reads_primal names.
  virtual bool has_param_rows(const OpCall<T>& c, int slot) const {
    (void)c, (void)slot;
    return false;
  }
  virtual void vjp_param_rows(const OpCall<T>& c, const Tensor<T>& gout, int slot, int64_t begin, int64_t end,
                              Tensor<T> gin) {
    (void)c, (void)gout, (void)slot, (void)begin, (void)end, (void)gin;
    throw Error(ErrorCode::kInternal, "node '" + c.node.name + "': the op has no vjp_param_rows");
  }
};

// ---- families ----

// f(in) = Σ_j L_j(in_j) with each L_j linear (Reshape, Transpose, Concat, Add, Sub, pooling by
// averaging, reductions, MaxPool given its arg-max...). Constant inputs take part in forward()
// only, so affine maps (x − μ) are linear ops with a constant input.
template <class T>
class LinearOp : public Op<T> {
 public:
  // out += L_j(x)  (broadcast contract)
  virtual void apply(const OpCall<T>& c, int j, const Tensor<T>& x, Tensor<T> out) = 0;
  // gx += L_jᵀ(g)  (broadcast contract: summed over examples when gx.E == 1 < g.E)
  virtual void transpose(const OpCall<T>& c, int j, const Tensor<T>& g, Tensor<T> gx) = 0;

  void forward(const OpCall<T>& c, Tensor<T> out) override;
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override;
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override;
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override;
  // A linear map's derivatives are the map itself: no primal (max pooling's arg-max overrides).
  bool reads_primal(int) const override { return false; }
};

// f(in_0) = φ(in_0) element-wise, φ one of ActivationFn's functions (activation.hpp).
template <class T>
class UnaryOp : public Op<T> {
 public:
  explicit UnaryOp(ActivationFn<T> fn) : fn_(fn) {}
  void forward(const OpCall<T>& c, Tensor<T> out) override;
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override;
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override;
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override;

 private:
  ActivationFn<T> fn_;
};

// f(a, b) = B(a, b) bilinear (MatMul, Conv, Mul): inputs 0 and 1. Its derivatives of every order
// follow from B and its two transposes:
//   jvp  B(ȧ, b) + B(a, ḃ);  vjp  ā = B_aᵀ(ḡ; b), b̄ = B_bᵀ(ḡ; a);
//   rvjp ā = B_aᵀ(ġ; b) + B_aᵀ(ḡ; ḃ),  b̄ = B_bᵀ(ġ; a) + B_bᵀ(ḡ; ȧ).
template <class T>
class BilinearOp : public Op<T> {
 public:
  // out += B(a, b)
  virtual void apply(const OpCall<T>& c, const Tensor<T>& a, const Tensor<T>& b, Tensor<T> out) = 0;
  // ga += B(·, b)ᵀ g
  virtual void transpose_a(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& b, Tensor<T> ga) = 0;
  // gb += B(a, ·)ᵀ g
  virtual void transpose_b(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& a, Tensor<T> gb) = 0;

  void forward(const OpCall<T>& c, Tensor<T> out) override;
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override;
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override;
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override;
};

// ---- registry ----

// One primitive op: its name, its shape rule and its implementation for both precisions.
struct OpDef {
  const char* name;
  // Checks the inputs (shapes, batched flags, attributes) and returns the output's shape; throws
  // basin::Error naming node.name and the op (kInvalidArgument for a misfit, kUnimplemented for an
  // attribute value Basin does not support).
  Shape (*infer)(const GraphNode& node, const std::vector<const GraphValue*>& inputs);
  std::unique_ptr<Op<double>> (*make_double)(const GraphNode& node, const std::vector<const GraphValue*>& inputs);
  std::unique_ptr<Op<float>> (*make_float)(const GraphNode& node, const std::vector<const GraphValue*>& inputs);
  bool differentiable = true;  // false: stop-gradient (Op::differentiable)
};

// nullptr for an unknown name. The list is kernels/src/ops/registry.cpp.
const OpDef* find_op(const std::string& name);
std::vector<std::string> op_names();
template <class T>
std::unique_ptr<Op<T>> make_op(const OpDef& def, const GraphNode& node, const std::vector<const GraphValue*>& inputs);

// Helpers for OpDef tables: make<ConcreteOp<double>> etc. construct ConcreteOp(node, inputs).
template <class O>
std::unique_ptr<Op<typename O::value_type>> make_op_as(const GraphNode& node, const std::vector<const GraphValue*>& inputs) {
  return std::make_unique<O>(node, inputs);
}

// Throws basin::Error(code) with "node '<name>' (<op>): <what>".
[[noreturn]] void op_error(const GraphNode& node, const std::string& what, bool unimplemented = false);

}  // namespace basin
