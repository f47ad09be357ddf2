// Recognising activations that exporters spell as small element-wise subgraphs.
//
//   exact GELU  x · 0.5 · (1 + erf(x / √2))   (torch.onnx.export of nn.GELU() before opset 20)
//   SiLU        x · sigmoid(x)                 (nn.SiLU(), every opset)
//
// The subgraph is given as an expression tree over the block input x and scalar constants, built
// from Mul, Div, Add, Sub, Erf and Sigmoid. Matching is up to the arrangements exporters use:
// products are flattened (any order and nesting of Mul, Div by a constant, constants multiplied
// together), sums likewise (Add in either order, Sub of a constant). Constants are compared with a
// relative tolerance of 1e-6 because files usually store them as float32 (√2 → 1.4142135).
#pragma once

#include <string>
#include <vector>

#include "basin/activation.hpp"

namespace basin::onnx_import_detail {

struct Expr {
  enum class Kind { kInput, kConst, kOp };
  Kind kind = Kind::kInput;
  double value = 0;               // kConst
  std::string op;                 // kOp: the ONNX op type
  std::vector<const Expr*> args;  // kOp: operands in node input order
};

// True (and *out set) when `e`, as a function of the block input, is exact GELU or SiLU.
bool match_activation(const Expr& e, Activation* out);

}  // namespace basin::onnx_import_detail
