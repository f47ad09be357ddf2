// Element-wise activation functions and their first and second derivatives.
//
// Written once as __host__ __device__ functions so that the CUDA kernels and the CPU backend run
// the same code, and so that the element logic of the GPU path is tested on the CPU.
// Conventions follow PyTorch exactly (float64 parity tests depend on it):
//   gelu      = 0.5·z·(1 + erf(z/√2))                      (approximate='none', the default)
//   softplus  = log(1 + e^z), and exactly z when z > 20       (beta = 1, threshold = 20)
//   relu'(0)  = 0, leaky_relu'(0) = alpha                     (PyTorch's subgradient choice)
// and for the element-wise functions of the graph path (the "unary" op, kernels/src/ops/unary.cpp):
//   elu(alpha)          z > 0 ? z : alpha·expm1(z);  elu'(0) = alpha (PyTorch: z <= 0 takes the exp branch)
//   hardtanh(alpha, beta)  clamp(z, min = alpha, max = beta); derivative 1 strictly inside, 0 at the ends
//   hardswish           z·relu6(z + 3)/6; derivative 0 below −3, z/3 + 1/2 on [−3, 3], 1 above
//                       (PyTorch's hardswish_backward), second derivative 1/3 on (−3, 3)
//   hardsigmoid(alpha, beta)  clamp(alpha·z + beta, 0, 1): PyTorch's relu6(z + 3)/6 is alpha = 1/6,
//                       beta = 1/2 (the defaults), ONNX HardSigmoid's alpha = 0.2, beta = 0.5;
//                       derivative alpha strictly inside (0, 1), 0 at and beyond the ends
//   pow(alpha)          z^alpha (z·z, sqrt, 1/z, ... for the exponents PyTorch special-cases);
//                       the derivative is 0 for alpha = 0, the second one 0 for alpha ∈ {0, 1}
//   gelu_tanh           0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))   (GELU approximate='tanh')
//   scale(alpha)        alpha·z
//   exp, log, sqrt, rsqrt = 1/√z, reciprocal = 1/z, square = z², erf   (their closed forms)
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define BASIN_HD __host__ __device__
#else
#define BASIN_HD
#endif

namespace basin {

enum class Activation : int {
  kIdentity = 0,
  kRelu,
  kLeakyRelu,
  kTanh,
  kSigmoid,
  kGelu,
  kSoftplus,
  kSilu,
  // Element-wise functions of the graph path (not layer types of the chain shorthand).
  kElu,
  kHardtanh,
  kHardswish,
  kHardsigmoid,
  kExp,
  kLog,
  kSqrt,
  kRsqrt,
  kReciprocal,
  kSquare,
  kPow,
  kErf,
  kGeluTanh,
  kScale,
};

// The parameters a function takes when none are given (PyTorch's defaults): leaky_relu's slope
// 0.01, elu's alpha 1, hardtanh's [−1, 1], hardsigmoid's 1/6 and 1/2, scale's 1. pow has no
// default exponent (the unary op requires alpha for it).
inline double default_alpha(Activation a) {
  switch (a) {
    case Activation::kElu: return 1.0;
    case Activation::kHardtanh: return -1.0;
    case Activation::kHardsigmoid: return 1.0 / 6.0;
    case Activation::kScale: return 1.0;
    case Activation::kPow: return 1.0;
    default: return 0.01;
  }
}
inline double default_beta(Activation a) {
  switch (a) {
    case Activation::kHardtanh: return 1.0;
    case Activation::kHardsigmoid: return 0.5;
    default: return 0.0;
  }
}

template <class T>
struct ActivationFn {
  Activation kind = Activation::kIdentity;
  T alpha = T(0.01);  // leaky_relu's negative slope; elu's alpha; hardtanh's min; hardsigmoid's slope;
                      // pow's exponent; scale's factor
  T beta = T(0);      // hardtanh's max; hardsigmoid's offset

  static BASIN_HD T sigmoid(T z) {
    // Stable on both tails: never exponentiates a large positive number.
    if (z >= T(0)) {
      T e = exp(-z);
      return T(1) / (T(1) + e);
    }
    T e = exp(z);
    return e / (T(1) + e);
  }
  // Standard normal density φ(z) = exp(-z²/2)/√(2π) and distribution Φ(z).
  static BASIN_HD T normal_pdf(T z) { return T(0.39894228040143267794) * exp(T(-0.5) * z * z); }
  static BASIN_HD T normal_cdf(T z) { return T(0.5) * (T(1) + erf(z * T(0.70710678118654752440))); }
  // z^p with the exponents PyTorch's pow kernel special-cases computed as it does.
  static BASIN_HD T power(T z, T p) {
    if (p == T(2)) return z * z;
    if (p == T(3)) return z * z * z;
    if (p == T(0.5)) return sqrt(z);
    if (p == T(-0.5)) return T(1) / sqrt(z);
    if (p == T(-1)) return T(1) / z;
    if (p == T(-2)) return T(1) / (z * z);
    if (p == T(1)) return z;
    if (p == T(0)) return T(1);
    return pow(z, p);
  }
  // gelu_tanh's inner u = √(2/π)(z + κz³), κ = 0.044715, and t = tanh(u), as PyTorch computes them.
  static BASIN_HD T gelu_tanh_t(T z) {
    const T z3 = z * z * z;
    return tanh(T(0.79788456080286535588) * (z + T(0.044715) * z3));
  }
  // u' = √(2/π)(1 + 3κz²)
  static BASIN_HD T gelu_tanh_du(T z) { return T(0.79788456080286535588) * (T(1) + T(3) * T(0.044715) * (z * z)); }
  static BASIN_HD T erf_first(T z) { return T(1.12837916709551257390) * exp(-z * z); }  // (2/√π)·e^{−z²}

  BASIN_HD T value(T z) const {
    switch (kind) {
      case Activation::kIdentity: return z;
      case Activation::kRelu: return z > T(0) ? z : T(0);
      case Activation::kLeakyRelu: return z > T(0) ? z : alpha * z;
      case Activation::kTanh: return tanh(z);
      case Activation::kSigmoid: return sigmoid(z);
      case Activation::kGelu: return z * normal_cdf(z);
      case Activation::kSoftplus: return z > T(20) ? z : (z > T(0) ? z + log1p(exp(-z)) : log1p(exp(z)));
      case Activation::kSilu: return z * sigmoid(z);
      case Activation::kElu: return z > T(0) ? z : alpha * expm1(z);
      case Activation::kHardtanh: return z < alpha ? alpha : (z > beta ? beta : z);
      case Activation::kHardswish: {
        const T r = z + T(3);
        return z * (r < T(0) ? T(0) : (r > T(6) ? T(6) : r)) / T(6);
      }
      case Activation::kHardsigmoid: {
        const T u = alpha * z + beta;
        return u < T(0) ? T(0) : (u > T(1) ? T(1) : u);
      }
      case Activation::kExp: return exp(z);
      case Activation::kLog: return log(z);
      case Activation::kSqrt: return sqrt(z);
      case Activation::kRsqrt: return T(1) / sqrt(z);
      case Activation::kReciprocal: return T(1) / z;
      case Activation::kSquare: return z * z;
      case Activation::kPow: return power(z, alpha);
      case Activation::kErf: return erf(z);
      case Activation::kGeluTanh: return T(0.5) * z * (T(1) + gelu_tanh_t(z));
      case Activation::kScale: return alpha * z;
    }
    return z;
  }

  // dφ/dz
  BASIN_HD T first(T z) const {
    switch (kind) {
      case Activation::kIdentity: return T(1);
      case Activation::kRelu: return z > T(0) ? T(1) : T(0);
      case Activation::kLeakyRelu: return z > T(0) ? T(1) : alpha;
      case Activation::kTanh: { T t = tanh(z); return T(1) - t * t; }
      case Activation::kSigmoid: { T s = sigmoid(z); return s * (T(1) - s); }
      case Activation::kGelu: return normal_cdf(z) + z * normal_pdf(z);  // Φ + zφ
      case Activation::kSoftplus: return z > T(20) ? T(1) : sigmoid(z);
      case Activation::kSilu: { T s = sigmoid(z); return s * (T(1) + z * (T(1) - s)); }
      case Activation::kElu: return z > T(0) ? T(1) : alpha * exp(z);
      case Activation::kHardtanh: return z > alpha && z < beta ? T(1) : T(0);
      case Activation::kHardswish: return z < T(-3) ? T(0) : (z <= T(3) ? z / T(3) + T(0.5) : T(1));
      case Activation::kHardsigmoid: {
        const T u = alpha * z + beta;
        return u > T(0) && u < T(1) ? alpha : T(0);
      }
      case Activation::kExp: return exp(z);
      case Activation::kLog: return T(1) / z;
      case Activation::kSqrt: return T(0.5) / sqrt(z);
      case Activation::kRsqrt: return T(-0.5) / (z * sqrt(z));
      case Activation::kReciprocal: return T(-1) / (z * z);
      case Activation::kSquare: return T(2) * z;
      case Activation::kPow: return alpha == T(0) ? T(0) : alpha * power(z, alpha - T(1));
      case Activation::kErf: return erf_first(z);
      case Activation::kGeluTanh: {  // PyTorch's gelu_backward (approximate='tanh')
        const T t = gelu_tanh_t(z);
        return T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * gelu_tanh_du(z);
      }
      case Activation::kScale: return alpha;
    }
    return T(1);
  }

  // d²φ/dz²
  BASIN_HD T second(T z) const {
    switch (kind) {
      case Activation::kIdentity:
      case Activation::kRelu:
      case Activation::kLeakyRelu: return T(0);
      case Activation::kTanh: { T t = tanh(z); return T(-2) * t * (T(1) - t * t); }
      case Activation::kSigmoid: { T s = sigmoid(z); return s * (T(1) - s) * (T(1) - T(2) * s); }
      case Activation::kGelu: return normal_pdf(z) * (T(2) - z * z);  // 2φ + zφ' with φ' = -zφ
      case Activation::kSoftplus: { if (z > T(20)) return T(0); T s = sigmoid(z); return s * (T(1) - s); }
      case Activation::kSilu: { T s = sigmoid(z); return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s)); }
      case Activation::kElu: return z > T(0) ? T(0) : alpha * exp(z);
      case Activation::kHardtanh:
      case Activation::kHardsigmoid:
      case Activation::kScale: return T(0);
      case Activation::kHardswish: return z > T(-3) && z < T(3) ? T(1) / T(3) : T(0);
      case Activation::kExp: return exp(z);
      case Activation::kLog: return T(-1) / (z * z);
      case Activation::kSqrt: return T(-0.25) / (z * sqrt(z));
      case Activation::kRsqrt: return T(0.75) / (z * z * sqrt(z));
      case Activation::kReciprocal: return T(2) / (z * z * z);
      case Activation::kSquare: return T(2);
      case Activation::kPow:
        return alpha == T(0) || alpha == T(1) ? T(0) : alpha * (alpha - T(1)) * power(z, alpha - T(2));
      case Activation::kErf: return T(-2) * z * erf_first(z);
      case Activation::kGeluTanh: {
        // d/dz [½(1 + t) + ½z(1 − t²)u'] with t = tanh u, t' = (1 − t²)u', u'' = 6κ√(2/π)z:
        //   (1 − t²)·(u' + ½z(u'' − 2t·u'²))
        const T t = gelu_tanh_t(z), du = gelu_tanh_du(z);
        const T d2u = T(6) * T(0.044715) * T(0.79788456080286535588) * z;
        return (T(1) - t * t) * (du + T(0.5) * z * (d2u - T(2) * t * du * du));
      }
    }
    return T(0);
  }
};

}  // namespace basin
