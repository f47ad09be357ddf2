// String names of the request enums, shared by the CLI, JSON and the wire contract.
#include <sstream>

#include "basin/analysis.hpp"
#include "basin/echo.hpp"
#include "basin/error.hpp"

namespace basin {
namespace {

template <class E, size_t N>
bool lookup(const std::string& s, const std::pair<const char*, E> (&table)[N], E* out) {
  for (const auto& [name, value] : table) {
    if (s == name) {
      *out = value;
      return true;
    }
  }
  return false;
}

const std::pair<const char*, Loss> kLosses[] = {
    {"none", Loss::kNone}, {"mse", Loss::kMse}, {"cross_entropy", Loss::kCrossEntropy}};
const std::pair<const char*, Reduction> kReductions[] = {{"mean", Reduction::kMean},
                                                         {"sum", Reduction::kSum}};
const std::pair<const char*, Method> kMethods[] = {
    {"auto", Method::kAuto}, {"gram", Method::kGram}, {"normal", Method::kNormal}, {"svd", Method::kSvd}};
const std::pair<const char*, DType> kDTypes[] = {{"float64", DType::kFloat64},
                                                 {"float32", DType::kFloat32}};
const std::pair<const char*, Device> kDevices[] = {
    {"auto", Device::kAuto}, {"cpu", Device::kCpu}, {"cuda", Device::kCuda}};

template <class E, size_t N>
const char* name_of(E value, const std::pair<const char*, E> (&table)[N]) {
  for (const auto& [name, v] : table)
    if (v == value) return name;
  return "?";
}

}  // namespace

const char* loss_name(Loss l) { return name_of(l, kLosses); }
const char* reduction_name(Reduction r) { return name_of(r, kReductions); }
const char* method_name(Method m) { return name_of(m, kMethods); }
const char* dtype_name(DType d) { return name_of(d, kDTypes); }
const char* device_name(Device d) { return name_of(d, kDevices); }
bool loss_from_name(const std::string& s, Loss* out) { return lookup(s, kLosses, out); }
bool reduction_from_name(const std::string& s, Reduction* out) { return lookup(s, kReductions, out); }
bool method_from_name(const std::string& s, Method* out) { return lookup(s, kMethods, out); }
bool dtype_from_name(const std::string& s, DType* out) { return lookup(s, kDTypes, out); }
bool device_from_name(const std::string& s, Device* out) { return lookup(s, kDevices, out); }

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::kValidate: return "validate";
    case Stage::kForward: return "forward";
    case Stage::kJacobian: return "jacobian";
    case Stage::kGram: return "gram";
    case Stage::kSolve: return "solve";
    case Stage::kHessian: return "hessian";
    case Stage::kDone: return "done";
    case Stage::kLanczos: return "lanczos";
    case Stage::kTrace: return "trace";
    case Stage::kDensity: return "density";
  }
  return "?";
}

Want parse_want(const std::string& list) {
  Want want{false, false, false, false};
  std::stringstream ss(list);
  std::string word;
  bool any = false;
  const char* kWords = "jacobian, ggn, hessian, per_parameter, hessian_top, ggn_top, hessian_trace, ggn_trace, "
                       "hessian_density, ggn_density";
  while (std::getline(ss, word, ',')) {
    if (word.empty()) continue;
    any = true;
    if (word == "jacobian") want.jacobian = true;
    else if (word == "ggn") want.ggn = true;
    else if (word == "hessian") want.hessian = true;
    else if (word == "per_parameter") want.per_parameter = true;
    else if (word == "hessian_top") want.hessian_top = true;
    else if (word == "ggn_top") want.ggn_top = true;
    else if (word == "hessian_trace") want.hessian_trace = true;
    else if (word == "ggn_trace") want.ggn_trace = true;
    else if (word == "hessian_density") want.hessian_density = true;
    else if (word == "ggn_density") want.ggn_density = true;
    else
      invalid_argument("want: unknown quantity '" + echo(word) + "'; expected a comma-separated list of " + kWords);
  }
  if (!any) invalid_argument(std::string("want: empty; expected a comma-separated list of ") + kWords);
  return want;
}

}  // namespace basin
