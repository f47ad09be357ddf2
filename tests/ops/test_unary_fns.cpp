// The element-wise functions of the graph path (activation.hpp, "unary" op): values against the
// std:: closed forms and PyTorch's conventions, first and second derivatives against finite
// differences, and the unary op over each of them (op_check.hpp).
#include <cmath>

#include "basin/activation.hpp"
#include "basin/model.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

struct Fn {
  const char* name;
  Activation kind;
  double alpha, beta;
  double lo, hi;  // the domain sampled (avoiding poles)
  std::vector<double> kinks;
};

const std::vector<Fn>& new_fns() {
  static const std::vector<Fn> fns = {
      {"elu", Activation::kElu, 1.0, 0.0, -5, 5, {0}},
      {"elu", Activation::kElu, 0.3, 0.0, -5, 5, {0}},
      {"hardtanh", Activation::kHardtanh, -1.0, 1.0, -3, 3, {-1, 1}},
      {"hardtanh", Activation::kHardtanh, -0.5, 2.0, -3, 3, {-0.5, 2}},
      {"hardswish", Activation::kHardswish, 0.0, 0.0, -5, 5, {-3, 3}},
      {"hardsigmoid", Activation::kHardsigmoid, 1.0 / 6.0, 0.5, -5, 5, {-3, 3}},
      {"hardsigmoid", Activation::kHardsigmoid, 0.2, 0.5, -5, 5, {-2.5, 2.5}},  // ONNX's defaults
      {"exp", Activation::kExp, 0.0, 0.0, -4, 4, {}},
      {"log", Activation::kLog, 0.0, 0.0, 0.1, 6, {}},
      {"sqrt", Activation::kSqrt, 0.0, 0.0, 0.1, 6, {}},
      {"rsqrt", Activation::kRsqrt, 0.0, 0.0, 0.1, 6, {}},
      {"reciprocal", Activation::kReciprocal, 0.0, 0.0, 0.2, 6, {}},
      {"reciprocal", Activation::kReciprocal, 0.0, 0.0, -6, -0.2, {}},
      {"square", Activation::kSquare, 0.0, 0.0, -4, 4, {}},
      {"pow", Activation::kPow, 3.0, 0.0, -3, 3, {}},
      {"pow", Activation::kPow, 2.0, 0.0, -3, 3, {}},
      {"pow", Activation::kPow, 1.5, 0.0, 0.1, 4, {}},
      {"pow", Activation::kPow, -0.5, 0.0, 0.1, 4, {}},
      {"pow", Activation::kPow, 0.0, 0.0, -3, 3, {}},
      {"pow", Activation::kPow, 1.0, 0.0, -3, 3, {}},
      {"pow", Activation::kPow, -2.0, 0.0, 0.2, 4, {}},
      {"erf", Activation::kErf, 0.0, 0.0, -4, 4, {}},
      {"gelu_tanh", Activation::kGeluTanh, 0.0, 0.0, -6, 6, {}},
      {"scale", Activation::kScale, -2.5, 0.0, -4, 4, {}},
  };
  return fns;
}

template <class T>
ActivationFn<T> fn_of(const Fn& f) {
  ActivationFn<T> a;
  a.kind = f.kind;
  a.alpha = T(f.alpha);
  a.beta = T(f.beta);
  return a;
}

// The std:: closed form of each function (PyTorch's definitions).
double reference(const Fn& f, double z) {
  const double a = f.alpha, b = f.beta;
  switch (f.kind) {
    case Activation::kElu: return z > 0 ? z : a * (std::exp(z) - 1);
    case Activation::kHardtanh: return std::min(std::max(z, a), b);
    case Activation::kHardswish: return z * std::min(std::max(z + 3, 0.0), 6.0) / 6;
    case Activation::kHardsigmoid: return std::max(0.0, std::min(1.0, a * z + b));
    case Activation::kExp: return std::exp(z);
    case Activation::kLog: return std::log(z);
    case Activation::kSqrt: return std::sqrt(z);
    case Activation::kRsqrt: return 1 / std::sqrt(z);
    case Activation::kReciprocal: return 1 / z;
    case Activation::kSquare: return z * z;
    case Activation::kPow: return std::pow(z, a);
    case Activation::kErf: return std::erf(z);
    case Activation::kGeluTanh:
      return 0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    case Activation::kScale: return a * z;
    default: return std::nan("");
  }
}

bool near_kink(const Fn& f, double z, double h) {
  for (double k : f.kinks)
    if (std::fabs(z - k) < 4 * h) return true;
  return false;
}

std::string label(const Fn& f) {
  return std::string(f.name) + "(" + std::to_string(f.alpha) + ", " + std::to_string(f.beta) + ")";
}

TEST(UnaryFnValues, MatchStdMath) {
  for (const Fn& f : new_fns()) {
    const ActivationFn<double> fn = fn_of<double>(f);
    for (double z = f.lo; z <= f.hi; z += 0.0731) {
      const double want = reference(f, z);
      EXPECT_NEAR(fn.value(z), want, 1e-15 * (1 + std::fabs(want))) << label(f) << " z=" << z;
    }
  }
}

TEST(UnaryFnDerivatives, MatchFiniteDifferences) {
  const double h = 1e-5;
  for (const Fn& f : new_fns()) {
    const ActivationFn<double> fn = fn_of<double>(f);
    for (double z = f.lo + 2 * h; z <= f.hi - 2 * h; z += 0.0731) {
      if (near_kink(f, z, h)) continue;
      const double fd1 = (fn.value(z + h) - fn.value(z - h)) / (2 * h);
      const double fd2 = (fn.first(z + h) - fn.first(z - h)) / (2 * h);
      EXPECT_NEAR(fn.first(z), fd1, 1e-7 * (1 + std::fabs(fd1))) << label(f) << " z=" << z;
      EXPECT_NEAR(fn.second(z), fd2, 1e-6 * (1 + std::fabs(fd2))) << label(f) << " z=" << z;
    }
  }
}

TEST(UnaryFnDerivatives, FloatAgreesWithDouble) {
  for (const Fn& f : new_fns()) {
    const ActivationFn<double> d = fn_of<double>(f);
    const ActivationFn<float> s = fn_of<float>(f);
    for (double z = f.lo; z <= f.hi; z += 0.113) {
      if (near_kink(f, z, 1e-3)) continue;
      const float zf = float(z);
      EXPECT_NEAR(s.value(zf), d.value(double(zf)), 2e-6 * (1 + std::fabs(d.value(zf)))) << label(f) << " z=" << z;
      EXPECT_NEAR(s.first(zf), d.first(double(zf)), 2e-5 * (1 + std::fabs(d.first(zf)))) << label(f) << " z=" << z;
      EXPECT_NEAR(s.second(zf), d.second(double(zf)), 1e-4 * (1 + std::fabs(d.second(zf)))) << label(f) << " z=" << z;
    }
  }
}

TEST(UnaryFnValues, FollowPyTorchAtTheKinks) {
  ActivationFn<double> f;
  f.kind = Activation::kElu;
  f.alpha = 0.3;
  EXPECT_EQ(f.value(0.0), 0.0);
  EXPECT_EQ(f.first(0.0), 0.3);  // z <= 0 takes the exponential branch
  f.kind = Activation::kHardtanh;
  f.alpha = -1;
  f.beta = 1;
  EXPECT_EQ(f.value(-2.0), -1.0);
  EXPECT_EQ(f.value(2.0), 1.0);
  EXPECT_EQ(f.first(-1.0), 0.0);  // PyTorch: 1 strictly inside (min, max) only
  EXPECT_EQ(f.first(1.0), 0.0);
  EXPECT_EQ(f.first(0.5), 1.0);
  f.kind = Activation::kHardswish;
  EXPECT_EQ(f.first(-3.0), -0.5);  // hardswish_backward: x < −3 → 0, x <= 3 → x/3 + 1/2
  EXPECT_EQ(f.first(3.0), 1.5);
  EXPECT_EQ(f.first(-3.5), 0.0);
  EXPECT_EQ(f.first(3.5), 1.0);
  EXPECT_EQ(f.second(-3.0), 0.0);  // 1/3 on the open interval only
  EXPECT_DOUBLE_EQ(f.second(0.0), 1.0 / 3.0);
  f.kind = Activation::kHardsigmoid;
  f.alpha = 1.0 / 6.0;
  f.beta = 0.5;
  EXPECT_EQ(f.value(-4.0), 0.0);
  EXPECT_EQ(f.value(4.0), 1.0);
  EXPECT_DOUBLE_EQ(f.value(1.2), (1.2 + 3) / 6);  // relu6(x + 3)/6
  EXPECT_EQ(f.first(-3.0), 0.0);                  // (x > −3 && x < 3) ? 1/6 : 0
  EXPECT_EQ(f.first(3.0), 0.0);
  EXPECT_DOUBLE_EQ(f.first(0.0), 1.0 / 6.0);
  f.kind = Activation::kPow;
  f.alpha = 0;
  EXPECT_EQ(f.value(0.0), 1.0);
  EXPECT_EQ(f.first(0.0), 0.0);  // PyTorch's pow_backward: 0 for exponent 0 (not 0·0⁻¹)
  f.alpha = 1;
  EXPECT_EQ(f.first(0.0), 1.0);
  EXPECT_EQ(f.second(0.0), 0.0);
  f.alpha = 2;
  EXPECT_EQ(f.value(-3.0), 9.0);
  EXPECT_EQ(f.first(-3.0), -6.0);
  EXPECT_EQ(f.second(-3.0), 2.0);
}

TEST(UnaryFnValues, DefaultParametersArePyTorchs) {
  EXPECT_EQ(default_alpha(Activation::kLeakyRelu), 0.01);
  EXPECT_EQ(default_alpha(Activation::kElu), 1.0);
  EXPECT_EQ(default_alpha(Activation::kHardtanh), -1.0);
  EXPECT_EQ(default_beta(Activation::kHardtanh), 1.0);
  EXPECT_EQ(default_alpha(Activation::kHardsigmoid), 1.0 / 6.0);
  EXPECT_EQ(default_beta(Activation::kHardsigmoid), 0.5);
  EXPECT_EQ(default_alpha(Activation::kScale), 1.0);
}

TEST(UnaryFnNames, RoundTripAndKeepTheExistingOnes) {
  for (const char* n : {"identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "silu", "elu",
                        "hardtanh", "hardswish", "hardsigmoid", "exp", "log", "sqrt", "rsqrt", "reciprocal", "square",
                        "pow", "erf", "gelu_tanh", "scale"}) {
    Activation a;
    ASSERT_TRUE(activation_from_name(n, &a)) << n;
    EXPECT_EQ(std::string(activation_name(a)), n);
  }
  Activation a;
  EXPECT_FALSE(activation_from_name("swish", &a));
}

TEST(UnaryFnNames, AreNotLayerTypesOfTheChain) {
  try {
    parse_model_json(R"({"input_dim": 2, "layers": [{"type": "dense", "out": 3}, {"type": "elu"}]})");
    FAIL() << "an elu layer was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("layers[1]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("elu"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(parse_model_json(R"({"input_dim": 2, "layers": [{"type": "dense", "out": 3}, {"type": "silu"}]})"));
}

// ---- the unary op over each function ----

OpCase unary_case(const Fn& f, OpInput in) {
  OpCase c;
  c.op = "unary";
  c.attrs["fn"] = attr_of(std::string(f.name));
  c.attrs["alpha"] = attr_of(f.alpha);
  c.attrs["beta"] = attr_of(f.beta);
  // Inputs inside the sampled domain (positive for log, sqrt, rsqrt, ...).
  in.offset = 0.5 * (f.lo + f.hi);
  in.scale = 0.15 * (f.hi - f.lo);
  c.inputs = {in};
  return c;
}

TEST(UnaryFnOp, EveryFunctionAgainstFiniteDifferences) {
  for (const Fn& f : new_fns()) {
    SCOPED_TRACE(label(f));
    OpCase c = unary_case(f, OpInput{{2, 3}});
    c.tol = 1e-5;
    EXPECT_EQ(check_op(c), (Shape{2, 3}));
    c = unary_case(f, OpInput{{5}, false});  // a function of a parameter alone
    c.tol = 1e-5;
    check_op(c);
  }
}

TEST(UnaryFnOp, ForwardMatchesStdMath) {
  for (const Fn& f : new_fns()) {
    OpCase c = unary_case(f, OpInput{{7}});
    detail::Harness h(c);
    const std::vector<double> y = h.forward(h.x);
    for (size_t i = 0; i < y.size(); ++i) {
      const double want = reference(f, h.x[0][i]);
      EXPECT_NEAR(y[i], want, 1e-15 * (1 + std::fabs(want))) << label(f) << " x=" << h.x[0][i];
    }
  }
}

TEST(UnaryFnOp, UsesTheDefaultParameters) {
  OpCase c;
  c.op = "unary";
  c.n = 1;
  c.inputs = {OpInput{{4}}};
  c.inputs[0].values = {-4, -1, 0.5, 4};
  c.attrs["fn"] = attr_of(std::string("elu"));  // alpha 1
  {
    detail::Harness h(c);
    const std::vector<double> y = h.forward(h.x);
    EXPECT_DOUBLE_EQ(y[0], std::expm1(-4.0));
    EXPECT_DOUBLE_EQ(y[3], 4.0);
  }
  c.attrs["fn"] = attr_of(std::string("hardtanh"));  // [-1, 1]
  {
    detail::Harness h(c);
    EXPECT_EQ(h.forward(h.x), (std::vector<double>{-1, -1, 0.5, 1}));
  }
  c.attrs["fn"] = attr_of(std::string("hardsigmoid"));  // relu6(x + 3)/6
  {
    detail::Harness h(c);
    const std::vector<double> y = h.forward(h.x);
    EXPECT_EQ(y[0], 0.0);
    EXPECT_DOUBLE_EQ(y[1], 2.0 / 6);
    EXPECT_DOUBLE_EQ(y[2], 3.5 / 6);
    EXPECT_EQ(y[3], 1.0);
  }
  c.attrs["alpha"] = attr_of(0.2);  // ONNX HardSigmoid's
  c.attrs["beta"] = attr_of(0.5);
  {
    detail::Harness h(c);
    const std::vector<double> y = h.forward(h.x);
    EXPECT_EQ(y[0], 0.0);
    EXPECT_DOUBLE_EQ(y[1], 0.3);
    EXPECT_DOUBLE_EQ(y[2], 0.6);
    EXPECT_EQ(y[3], 1.0);
  }
}

void expect_error(const OpCase& c, ErrorCode code, const std::vector<std::string>& parts) {
  try {
    infer_shape(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(UnaryFnOp, RefusesBadParameters) {
  OpCase c;
  c.op = "unary";
  c.inputs = {OpInput{{3}}};
  c.attrs["fn"] = attr_of(std::string("pow"));
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "pow", "alpha"});
  c.attrs["fn"] = attr_of(std::string("hardtanh"));
  c.attrs["alpha"] = attr_of(2.0);
  c.attrs["beta"] = attr_of(1.0);
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "hardtanh", "alpha"});
  c.attrs["fn"] = attr_of(std::string("elu"));
  c.attrs["alpha"] = attr_of(std::nan(""));
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "finite"});
  c.attrs["fn"] = attr_of(std::string("cube_root"));
  expect_error(c, ErrorCode::kUnimplemented, {"under_test", "cube_root"});
}

}  // namespace
}  // namespace test
}  // namespace basin
