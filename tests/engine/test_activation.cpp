// Activation values match PyTorch's formulas; first and second derivatives match central
// finite differences of the function itself.
#include <gtest/gtest.h>

#include <cmath>

#include "basin/activation.hpp"
#include "basin/model.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

class ActivationTest : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationTest, DerivativesMatchFiniteDifferences) {
  const ActivationFn<double> fn{GetParam(), 0.07};
  const double h = 1e-5;
  for (double z = -6.1; z <= 6.1; z += 0.173) {
    if (std::fabs(z) < 2 * h) continue;  // relu / leaky_relu kink
    const double fd1 = (fn.value(z + h) - fn.value(z - h)) / (2 * h);
    const double fd2 = (fn.first(z + h) - fn.first(z - h)) / (2 * h);
    EXPECT_NEAR(fn.first(z), fd1, 1e-8 * (1 + std::fabs(fd1))) << activation_name(GetParam()) << " z=" << z;
    EXPECT_NEAR(fn.second(z), fd2, 1e-7 * (1 + std::fabs(fd2))) << activation_name(GetParam()) << " z=" << z;
  }
}

TEST_P(ActivationTest, FloatAgreesWithDouble) {
  const ActivationFn<double> d{GetParam(), 0.07};
  const ActivationFn<float> f{GetParam(), 0.07f};
  for (double z = -8; z <= 8; z += 0.37) {
    EXPECT_NEAR(f.value(float(z)), d.value(z), 1e-5 * (1 + std::fabs(d.value(z))));
    EXPECT_NEAR(f.first(float(z)), d.first(z), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(All, ActivationTest, ::testing::ValuesIn(test::kAllActivations),
                         [](const auto& info) { return std::string(activation_name(info.param)); });

TEST(Activation, MatchesPyTorchDefinitions) {
  // Values from the closed forms PyTorch documents.
  const ActivationFn<double> gelu{Activation::kGelu}, softplus{Activation::kSoftplus}, silu{Activation::kSilu};
  EXPECT_NEAR(gelu.value(1.0), 0.5 * (1 + std::erf(1 / std::sqrt(2.0))), 4e-16);
  EXPECT_DOUBLE_EQ(softplus.value(25.0), 25.0);  // threshold = 20: exactly linear above
  EXPECT_NEAR(softplus.value(-30.0), std::exp(-30.0), 1e-25);
  EXPECT_NEAR(silu.value(2.0), 2.0 / (1 + std::exp(-2.0)), 1e-15);
  const ActivationFn<double> relu{Activation::kRelu}, leaky{Activation::kLeakyRelu, 0.2};
  EXPECT_EQ(relu.first(0.0), 0.0);    // PyTorch's subgradient at 0
  EXPECT_EQ(leaky.first(0.0), 0.2);
  EXPECT_EQ(leaky.value(-2.0), -0.4);
}

}  // namespace
}  // namespace basin
