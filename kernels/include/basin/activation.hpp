// Element-wise activation functions and their first and second derivatives.
//
// Written once as __host__ __device__ functions so that the CUDA kernels and the CPU backend run
// the same code, and so that the element logic of the GPU path is tested on the CPU.
// Conventions follow PyTorch exactly (float64 parity tests depend on it):
//   gelu      = 0.5·z·(1 + erf(z/√2))                      (approximate='none', the default)
//   softplus  = log(1 + e^z), and exactly z when z > 20       (beta = 1, threshold = 20)
//   relu'(0)  = 0, leaky_relu'(0) = alpha                     (PyTorch's subgradient choice)
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
};

template <class T>
struct ActivationFn {
  Activation kind = Activation::kIdentity;
  T alpha = T(0.01);  // negative slope of leaky_relu

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
    }
    return T(0);
  }
};

}  // namespace basin
