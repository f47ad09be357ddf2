#include "basin/wire/proto_convert.hpp"

#include <map>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "basin/echo.hpp"
#include "basin/error.hpp"
#include "basin/model.hpp"
#ifdef BASIN_HAVE_ONNX
#include "basin/onnx_import.hpp"
#endif

namespace basin::wire {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

size_t itemsize(NpyDType d) {
  return (d == NpyDType::kFloat32 || d == NpyDType::kInt32) ? 4 : 8;
}

// Resolves an inline tensor or a blob reference; `present` says whether the field was set.
NpyArray read_source(const v1::TensorSource& src, const std::string& field,
                     const BlobReader& read_blob) {
  switch (src.source_case()) {
    case v1::TensorSource::kTensor:
      return tensor_to_npy(src.tensor(), field + ".tensor");
    case v1::TensorSource::kBlobId: {
      std::vector<uint8_t> bytes = read_blob(src.blob_id(), field + ".blob_id");
      // The blob must be a .npy file: parse_npy names `what` in its errors.
      return parse_npy(bytes, field + ".blob_id (" + echo(src.blob_id()) + ")");
    }
    case v1::TensorSource::SOURCE_NOT_SET:
      break;
  }
  invalid_argument(field + ": missing; expected an inline tensor or a blob_id");
}

// Float values with every element checked for NaN/Inf: a NaN parameter silently poisons every
// singular value, so it is refused with the index of the first bad element.
std::vector<double> finite_doubles(const NpyArray& a, const std::string& field) {
  if (!a.is_float()) {
    invalid_argument(field + ".dtype: expected float32 or float64, got " +
                     npy_dtype_name(a.dtype));
  }
  std::vector<double> v = a.to_double();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      invalid_argument(field + ": element " + std::to_string(i) + " is " +
                       (std::isnan(v[i]) ? "NaN" : "infinite") + "; expected finite values");
    }
  }
  return v;
}

// The model's input holds integer token ids (a graph whose input feeds a Gather).
bool integer_input(const AnalysisRequest& r) {
  return r.graph && r.graph->input() >= 0 && r.graph->value(r.graph->input()).integer;
}

// Cross-entropy labels: [n], or [n, ..] for a sequence output [n, .., C] (one label per position;
// C the last axis, as the engine's loss_classes); *classes = C.
std::vector<int64_t> label_shape(const AnalysisRequest& r, int64_t* classes) {
  const int64_t k = r.graph ? r.graph->output_dim() : r.model.output_dim();
  std::vector<int64_t> want = {r.num_examples};
  *classes = k;
  if (r.graph && r.graph->output() >= 0) {
    const Shape& out = r.graph->value(r.graph->output()).shape;
    if (out.size() >= 2 && out.back() < k) {
      want.insert(want.end(), out.begin(), out.end() - 1);
      *classes = out.back();
    }
  }
  return want;
}

void int64s_to_tensor(const std::vector<int64_t>& values, const std::vector<int64_t>& shape, v1::Tensor* out) {
  out->set_dtype(v1::DTYPE_INT64);
  for (int64_t d : shape) out->add_shape(d);
  out->set_data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t));
}

Loss loss_from(v1::Loss l) {
  switch (l) {
    case v1::LOSS_UNSPECIFIED:
    case v1::LOSS_NONE: return Loss::kNone;
    case v1::LOSS_MSE: return Loss::kMse;
    case v1::LOSS_CROSS_ENTROPY: return Loss::kCrossEntropy;
    default: break;
  }
  invalid_argument("loss: unknown value " + std::to_string(static_cast<int>(l)) +
                   "; expected LOSS_NONE, LOSS_MSE or LOSS_CROSS_ENTROPY");
}

Reduction reduction_from(v1::Reduction r) {
  switch (r) {
    case v1::REDUCTION_UNSPECIFIED:
    case v1::REDUCTION_MEAN: return Reduction::kMean;
    case v1::REDUCTION_SUM: return Reduction::kSum;
    default: break;
  }
  invalid_argument("reduction: unknown value " + std::to_string(static_cast<int>(r)) +
                   "; expected REDUCTION_MEAN or REDUCTION_SUM");
}

Method method_from(v1::Method m) {
  switch (m) {
    case v1::METHOD_UNSPECIFIED:
    case v1::METHOD_AUTO: return Method::kAuto;
    case v1::METHOD_GRAM: return Method::kGram;
    case v1::METHOD_NORMAL: return Method::kNormal;
    case v1::METHOD_SVD: return Method::kSvd;
    default: break;
  }
  invalid_argument("method: unknown value " + std::to_string(static_cast<int>(m)) +
                   "; expected METHOD_AUTO, METHOD_GRAM, METHOD_NORMAL or METHOD_SVD");
}

DType dtype_from(v1::ComputeDType d) {
  switch (d) {
    case v1::COMPUTE_DTYPE_UNSPECIFIED:
    case v1::COMPUTE_DTYPE_FLOAT64: return DType::kFloat64;
    case v1::COMPUTE_DTYPE_FLOAT32: return DType::kFloat32;
    default: break;
  }
  invalid_argument("dtype: unknown value " + std::to_string(static_cast<int>(d)) +
                   "; expected COMPUTE_DTYPE_FLOAT64 or COMPUTE_DTYPE_FLOAT32");
}

Device device_from(v1::Device d, Device default_device) {
  switch (d) {
    case v1::DEVICE_UNSPECIFIED: return default_device;
    case v1::DEVICE_AUTO: return Device::kAuto;
    case v1::DEVICE_CPU: return Device::kCpu;
    case v1::DEVICE_CUDA: return Device::kCuda;
    default: break;
  }
  invalid_argument("device: unknown value " + std::to_string(static_cast<int>(d)) +
                   "; expected DEVICE_AUTO, DEVICE_CPU or DEVICE_CUDA");
}

v1::Loss loss_to(Loss l) {
  switch (l) {
    case Loss::kNone: return v1::LOSS_NONE;
    case Loss::kMse: return v1::LOSS_MSE;
    case Loss::kCrossEntropy: return v1::LOSS_CROSS_ENTROPY;
  }
  return v1::LOSS_UNSPECIFIED;
}
v1::Reduction reduction_to(Reduction r) {
  return r == Reduction::kSum ? v1::REDUCTION_SUM : v1::REDUCTION_MEAN;
}
v1::Method method_to(Method m) {
  switch (m) {
    case Method::kAuto: return v1::METHOD_AUTO;
    case Method::kGram: return v1::METHOD_GRAM;
    case Method::kNormal: return v1::METHOD_NORMAL;
    case Method::kSvd: return v1::METHOD_SVD;
  }
  return v1::METHOD_UNSPECIFIED;
}
v1::Device device_to(Device d) {
  switch (d) {
    case Device::kAuto: return v1::DEVICE_AUTO;
    case Device::kCpu: return v1::DEVICE_CPU;
    case Device::kCuda: return v1::DEVICE_CUDA;
  }
  return v1::DEVICE_UNSPECIFIED;
}

std::vector<double> repeated_to_vector(const google::protobuf::RepeatedField<double>& r) {
  return std::vector<double>(r.begin(), r.end());
}

std::vector<double> tensor_doubles(const v1::Tensor& t, const std::string& field) {
  if (t.data().empty() && t.shape_size() == 0) return {};
  return tensor_to_npy(t, field).to_double();
}

}  // namespace

NpyArray tensor_to_npy(const v1::Tensor& tensor, const std::string& field) {
  NpyArray a;
  switch (tensor.dtype()) {
    case v1::DTYPE_FLOAT32: a.dtype = NpyDType::kFloat32; break;
    case v1::DTYPE_FLOAT64: a.dtype = NpyDType::kFloat64; break;
    case v1::DTYPE_INT32: a.dtype = NpyDType::kInt32; break;
    case v1::DTYPE_INT64: a.dtype = NpyDType::kInt64; break;
    default:
      invalid_argument(field + ".dtype: " +
                       (tensor.dtype() == v1::DTYPE_UNSPECIFIED
                            ? std::string("unset")
                            : "unknown value " + std::to_string(static_cast<int>(tensor.dtype()))) +
                       "; expected DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT32 or DTYPE_INT64");
  }
  // Element count with overflow checks: a hostile shape like [2^40, 2^40] must be refused
  // before anything multiplies it into a byte count.
  uint64_t count = 1;
  for (int i = 0; i < tensor.shape_size(); ++i) {
    int64_t d = tensor.shape(i);
    if (d < 0) {
      invalid_argument(field + ".shape[" + std::to_string(i) + "]: " + std::to_string(d) +
                       " is negative; expected dimensions >= 0");
    }
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d)) {
      invalid_argument(field + ".shape: " + shape_str({tensor.shape().begin(), tensor.shape().end()}) +
                       " has too many elements");
    }
    count *= static_cast<uint64_t>(d);
  }
  a.shape.assign(tensor.shape().begin(), tensor.shape().end());
  const uint64_t expected = count * itemsize(a.dtype);
  if (tensor.data().size() != expected) {
    invalid_argument(field + ".data: expected " + std::to_string(expected) + " bytes (shape " +
                     shape_str(a.shape) + " x " + std::to_string(itemsize(a.dtype)) + " bytes of " +
                     npy_dtype_name(a.dtype) + "), got " + std::to_string(tensor.data().size()));
  }
  a.bytes.assign(tensor.data().begin(), tensor.data().end());
  return a;
}

void npy_to_tensor(const NpyArray& array, v1::Tensor* out) {
  switch (array.dtype) {
    case NpyDType::kFloat32: out->set_dtype(v1::DTYPE_FLOAT32); break;
    case NpyDType::kFloat64: out->set_dtype(v1::DTYPE_FLOAT64); break;
    case NpyDType::kInt32: out->set_dtype(v1::DTYPE_INT32); break;
    case NpyDType::kInt64: out->set_dtype(v1::DTYPE_INT64); break;
  }
  out->clear_shape();
  for (int64_t d : array.shape) out->add_shape(d);
  out->set_data(array.bytes.data(), array.bytes.size());
}

void doubles_to_tensor(const std::vector<double>& values, std::vector<int64_t> shape,
                       v1::Tensor* out) {
  out->set_dtype(v1::DTYPE_FLOAT64);
  out->clear_shape();
  for (int64_t d : shape) out->add_shape(d);
  // The wire format is little-endian; so is every platform Basin builds on (x86-64, aarch64).
  out->set_data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
}

Model model_from_proto(const v1::Model& model, const std::string& field, const StopCheck& check_stop) {
  Model m;
  m.input_dim = model.input_dim();
  if (m.input_dim <= 0) {
    invalid_argument(field + ".input_dim: " + std::to_string(m.input_dim) +
                     "; expected a positive integer");
  }
  if (model.layers_size() == 0) {
    invalid_argument(field + ".layers: empty; expected at least one dense layer");
  }
  m.layers.reserve(static_cast<size_t>(model.layers_size()));
  for (int i = 0; i < model.layers_size(); ++i) {
    if (check_stop && i % 4096 == 0) check_stop();
    const v1::Layer& l = model.layers(i);
    auto lf = [&field, i] { return field + ".layers[" + std::to_string(i) + "]"; };  // on failure only
    if (l.type() == "dense") {
      if (l.out() <= 0) {
        invalid_argument(lf() + ".out: " + std::to_string(l.out()) +
                         "; expected a positive width for a dense layer");
      }
      m.layers.push_back(Layer::dense(l.out(), l.has_bias() ? l.bias() : true));
      continue;
    }
    Activation a;
    if (!activation_from_name(l.type(), &a)) {
      invalid_argument(lf() + ".type: unknown layer '" + echo(l.type()) +
                       "'; expected dense, identity, relu, leaky_relu, tanh, sigmoid, gelu, "
                       "softplus or silu");
    }
    const double alpha = l.has_alpha() ? l.alpha() : 0.01;
    if (!std::isfinite(alpha)) invalid_argument(lf() + ".alpha: expected a finite number");
    m.layers.push_back(Layer::act(a, alpha));
  }
  m.validate();
  return m;
}

void model_to_proto(const Model& model, v1::Model* out) {
  out->set_input_dim(model.input_dim);
  out->clear_layers();
  for (const Layer& l : model.layers) {
    v1::Layer* pl = out->add_layers();
    if (l.kind == Layer::Kind::kDense) {
      pl->set_type("dense");
      pl->set_out(l.out);
      pl->set_bias(l.bias);
    } else {
      pl->set_type(activation_name(l.activation));
      if (l.activation == Activation::kLeakyRelu) pl->set_alpha(l.alpha);
    }
  }
}

DecodedRequest decode_request(const v1::AnalyzeRequest& request, const BlobReader& read_blob,
                              Device default_device, const Limits& limits,
                              const StopCheck& check_stop) {
  DecodedRequest out;
  AnalysisRequest& r = out.base;
  std::vector<double> onnx_params;  // the initialisers of an ONNX model, when params are unset
  r.limits = limits;

  switch (request.model_source_case()) {
    case v1::AnalyzeRequest::kModel:
      // From the count alone, before any per-layer work.
      check_layer_count(request.model().layers_size(), limits, "model.layers");
      r.model = model_from_proto(request.model(), "model", check_stop);
      break;
    case v1::AnalyzeRequest::kOnnxBlobId: {
      // Resolve the id first so an unknown blob is reported as such in every build.
      const std::vector<uint8_t> bytes = read_blob(request.onnx_blob_id(), "onnx_blob_id");
#ifdef BASIN_HAVE_ONNX
      ImportBounds bounds;
      bounds.max_nodes = limits.max_layers > std::numeric_limits<int64_t>::max() / 4
                             ? std::numeric_limits<int64_t>::max()
                             : 4 * limits.max_layers;
      bounds.check_stop = check_stop;
      const std::string what = "onnx_blob_id (" + echo(request.onnx_blob_id()) + ")";
      // The client's names say which initialisers are θ (a torch module's, in parameters()
      // order) and which are constants (AnalyzeRequest fields 60, 61).
      bounds.parameter_names.assign(request.parameter_names().begin(), request.parameter_names().end());
      bounds.constant_names.assign(request.constant_names().begin(), request.constant_names().end());
      if (request.inputs().source_case() == v1::TensorSource::kTensor) {  // resolves dynamic dims
        const auto& dims = request.inputs().tensor().shape();
        if (dims.size() >= 2) bounds.input_shape.assign(dims.begin() + 1, dims.end());
      }
      ImportedModel imported = import_onnx(std::string(bytes.begin(), bytes.end()), what, bounds);
      check_layer_count(static_cast<int64_t>(imported.graph.nodes().size()), limits, what + " nodes");
      onnx_params = std::move(imported.params);
      // A dense chain as its chain form (the same θ, as the layer list would be), else the graph.
      if (!imported.model.layers.empty()) r.model = std::move(imported.model);
      else r.graph = std::make_shared<const Graph>(std::move(imported.graph));
      break;
#else
      (void)bytes;
      throw Error(ErrorCode::kUnimplemented,
                  "onnx_blob_id: this server was built without the ONNX importer; send the "
                  "model as a layer list");
#endif
    }
    case v1::AnalyzeRequest::MODEL_SOURCE_NOT_SET:
      invalid_argument("model: missing; expected a layer list (model) or onnx_blob_id");
  }
  if (request.param_names_size() > 0 && !r.graph)  // an ONNX graph's names are its initialisers'
    r.model.param_names.assign(request.param_names().begin(), request.param_names().end());
  if (check_stop) check_stop();
  const int64_t n_params = r.graph ? r.graph->num_params() : r.model.num_params();
  const int64_t in_dim = r.graph ? r.graph->input_size() : r.model.input_dim;
  const int64_t k = r.graph ? r.graph->output_dim() : r.model.output_dim();

  r.loss = loss_from(request.loss());
  r.reduction = reduction_from(request.reduction());
  r.method = method_from(request.method());
  r.dtype = dtype_from(request.dtype());
  r.device = device_from(request.device(), default_device);
  if (request.has_want()) {
    r.want.jacobian = request.want().jacobian();
    r.want.ggn = request.want().ggn();
    r.want.hessian = request.want().hessian();
    r.want.per_parameter = request.want().per_parameter();
    r.want.hessian_top = request.want().hessian_top();
    r.want.ggn_top = request.want().ggn_top();
    r.want.hessian_trace = request.want().hessian_trace();
    r.want.ggn_trace = request.want().ggn_trace();
    r.want.hessian_density = request.want().hessian_density();
    r.want.ggn_density = request.want().ggn_density();
  }
  if (request.has_spectra()) {
    const v1::SpectraOptions& s = request.spectra();
    if (s.has_top_k()) r.spectra.top_k = s.top_k();
    if (s.has_bottom_k()) r.spectra.bottom_k = s.bottom_k();
    if (s.has_lanczos_steps()) r.spectra.lanczos_steps = s.lanczos_steps();
    if (s.has_lanczos_block()) r.spectra.lanczos_block = s.lanczos_block();
    if (s.has_probes()) r.spectra.probes = s.probes();
    if (s.has_seed()) r.spectra.seed = s.seed();
    if (s.has_tol()) r.spectra.tol = s.tol();
    r.spectra.eigenvectors = s.eigenvectors();
    if (!s.method().empty()) r.spectra.method = s.method();
  }
  if (request.has_rtol()) r.rtol = request.rtol();
  if (request.has_atol()) r.atol = request.atol();
  r.return_jacobian = request.return_jacobian();
  r.return_outputs = !request.omit_outputs();
  if (request.vectors_size() > 0) {
    std::string words;
    for (const std::string& w : request.vectors()) words += (words.empty() ? "" : ",") + w;
    r.vectors = parse_vectors(words);
  }
  if (request.vectors_k() != 0 && request.vectors_size() == 0)
    invalid_argument("vectors_k: set, but no vectors requested; name them in vectors");
  r.vectors.k = request.vectors_k();

  // Parameters: [N] or a batch [B, N]; an ONNX model brings its own unless params are given.
  if (request.params().source_case() == v1::TensorSource::SOURCE_NOT_SET && !onnx_params.empty()) {
    out.checkpoints.push_back(std::move(onnx_params));
  } else {
    NpyArray p = read_source(request.params(), "params", read_blob);
    const std::string expect = "[" + std::to_string(n_params) + "] or [B, " +
                               std::to_string(n_params) + "] (the model has " +
                               std::to_string(n_params) + " parameters)";
    if (p.shape.size() != 1 && p.shape.size() != 2) {
      invalid_argument("params.shape: got " + shape_str(p.shape) + "; expected " + expect);
    }
    if (p.shape.back() != n_params || (p.shape.size() == 2 && p.shape[0] < 1)) {
      invalid_argument("params.shape: got " + shape_str(p.shape) + "; expected " + expect);
    }
    std::vector<double> all = finite_doubles(p, "params");
    const int64_t batch = p.shape.size() == 2 ? p.shape[0] : 1;
    out.checkpoints.resize(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      out.checkpoints[b].assign(all.begin() + b * n_params, all.begin() + (b + 1) * n_params);
    }
  }

  // Inputs: [n, input_dim] ([n] accepted when input_dim = 1; [n, ...] of input_dim values per
  // example, flattened row-major as nn.Flatten does, e.g. images for an ONNX chain).
  {
    NpyArray x = read_source(request.inputs(), "inputs", read_blob);
    int64_t per_example = 1;
    for (size_t i = 1; i < x.shape.size(); ++i) per_example *= x.shape[i];
    const bool ok = (x.shape.size() >= 2 && per_example == in_dim) ||
                    (x.shape.size() == 1 && in_dim == 1);
    if (!ok || x.shape[0] < 1) {
      invalid_argument("inputs.shape: got " + shape_str(x.shape) + "; expected [n, " +
                       std::to_string(in_dim) + "] with n >= 1 (model input_dim is " +
                       std::to_string(in_dim) + ")");
    }
    r.num_examples = x.shape[0];
    if (integer_input(r)) {  // token ids (a Gather of the input): exact in double
      if (x.is_float())
        invalid_argument("inputs.dtype: got " + std::string(npy_dtype_name(x.dtype)) +
                         "; expected int32 or int64 token ids (the model's input is an integer tensor)");
      r.inputs = x.to_double();
    } else {
      r.inputs = finite_doubles(x, "inputs");
    }
  }
  if (check_stop) check_stop();
  const int64_t n = r.num_examples;

  // Targets: float [n, k] for mse, integer labels [n] for cross_entropy, nothing for none.
  const bool has_targets = request.targets().source_case() != v1::TensorSource::SOURCE_NOT_SET;
  if (r.loss == Loss::kMse) {
    NpyArray y = read_source(request.targets(), "targets", read_blob);
    const bool ok = (y.shape.size() == 2 && y.shape[0] == n && y.shape[1] == k) ||
                    (y.shape.size() == 1 && y.shape[0] == n && k == 1);
    if (!ok) {
      invalid_argument("targets.shape: got " + shape_str(y.shape) + "; expected [" +
                       std::to_string(n) + ", " + std::to_string(k) +
                       "] for mse (n examples x k model outputs)");
    }
    r.targets = finite_doubles(y, "targets");
  } else if (r.loss == Loss::kCrossEntropy) {
    NpyArray y = read_source(request.targets(), "targets", read_blob);
    if (y.is_float()) {
      invalid_argument("targets.dtype: got " + std::string(npy_dtype_name(y.dtype)) +
                       "; expected int32 or int64 class labels for cross_entropy");
    }
    // One label per example, or per position of a sequence output [n, .., C] (loss.hpp).
    int64_t classes = k;
    const std::vector<int64_t> want = label_shape(r, &classes);
    if (y.shape != want) {
      invalid_argument("targets.shape: got " + shape_str(y.shape) + "; expected " + shape_str(want) +
                       (want.size() > 1 ? " labels for cross_entropy, one per position of the output [n, " +
                                              shape_str(r.graph->value(r.graph->output()).shape).substr(1)
                                        : std::string(" class labels for cross_entropy")));
    }
    r.labels = y.to_int64();
    for (size_t i = 0; i < r.labels.size(); ++i) {
      if (r.labels[i] < 0 || r.labels[i] >= classes) {
        invalid_argument("targets: label " + std::to_string(r.labels[i]) + " at index " +
                         std::to_string(i) + " is out of range; expected 0 <= label < " +
                         std::to_string(classes));
      }
    }
  } else if (has_targets) {
    invalid_argument("targets: given but loss is none; expected no targets (or set loss)");
  }

  // Everything else (want vs loss, limits, tolerances) is the engine's rule book; checking it
  // here, before queueing, means a bad request fails at submit time, not minutes later. Every
  // checkpoint, not just the first: a float32 job whose params[1] is out of range would
  // otherwise be accepted and fail when it runs (found by fuzz/fuzz_request.cpp).
  if (check_stop) check_stop();
  validate_checkpoints(r, out.checkpoints, check_stop);
  return out;
}

void request_to_proto(const AnalysisRequest& request, v1::AnalyzeRequest* out,
                      const std::vector<std::vector<double>>& checkpoints) {
  model_to_proto(request.model, out->mutable_model());
  const int64_t n = request.num_examples;
  // A graph (an imported ONNX file: the caller sends the file itself as onnx_blob_id) has its
  // own per-example input shape and output count.
  const int64_t k = request.graph ? request.graph->output_dim() : request.model.output_dim();
  if (checkpoints.size() > 1) {
    const int64_t N = static_cast<int64_t>(checkpoints.front().size());
    std::vector<double> all;
    all.reserve(checkpoints.size() * checkpoints.front().size());
    for (const std::vector<double>& c : checkpoints) all.insert(all.end(), c.begin(), c.end());
    doubles_to_tensor(all, {static_cast<int64_t>(checkpoints.size()), N}, out->mutable_params()->mutable_tensor());
  } else {
    doubles_to_tensor(request.params, {static_cast<int64_t>(request.params.size())},
                      out->mutable_params()->mutable_tensor());
  }
  std::vector<int64_t> x_shape{n};
  if (request.graph) {
    for (int64_t d : request.graph->input_shape()) x_shape.push_back(d);
  } else {
    x_shape.push_back(request.model.input_dim);
  }
  if (integer_input(request)) {
    std::vector<int64_t> ids(request.inputs.begin(), request.inputs.end());
    int64s_to_tensor(ids, x_shape, out->mutable_inputs()->mutable_tensor());
  } else {
    doubles_to_tensor(request.inputs, x_shape, out->mutable_inputs()->mutable_tensor());
  }
  if (request.loss == Loss::kMse) {
    doubles_to_tensor(request.targets, {n, k}, out->mutable_targets()->mutable_tensor());
  } else if (request.loss == Loss::kCrossEntropy) {
    int64_t classes = 0;
    std::vector<int64_t> shape = label_shape(request, &classes);
    if (shape_numel(shape) != static_cast<int64_t>(request.labels.size()))
      shape = {static_cast<int64_t>(request.labels.size())};
    int64s_to_tensor(request.labels, shape, out->mutable_targets()->mutable_tensor());
  }
  out->set_loss(loss_to(request.loss));
  out->set_reduction(reduction_to(request.reduction));
  out->mutable_want()->set_jacobian(request.want.jacobian);
  out->mutable_want()->set_ggn(request.want.ggn);
  out->mutable_want()->set_hessian(request.want.hessian);
  out->mutable_want()->set_per_parameter(request.want.per_parameter);
  out->mutable_want()->set_hessian_top(request.want.hessian_top);
  out->mutable_want()->set_ggn_top(request.want.ggn_top);
  out->mutable_want()->set_hessian_trace(request.want.hessian_trace);
  out->mutable_want()->set_ggn_trace(request.want.ggn_trace);
  out->mutable_want()->set_hessian_density(request.want.hessian_density);
  out->mutable_want()->set_ggn_density(request.want.ggn_density);
  {
    v1::SpectraOptions* s = out->mutable_spectra();
    s->set_top_k(request.spectra.top_k);
    s->set_bottom_k(request.spectra.bottom_k);
    s->set_lanczos_steps(request.spectra.lanczos_steps);
    s->set_lanczos_block(request.spectra.lanczos_block);
    s->set_probes(request.spectra.probes);
    s->set_seed(request.spectra.seed);
    s->set_tol(request.spectra.tol);
    s->set_eigenvectors(request.spectra.eigenvectors);
    s->set_method(request.spectra.method);
  }
  for (const std::string& name : request.model.param_names) out->add_param_names(name);
  out->set_method(method_to(request.method));
  out->set_dtype(request.dtype == DType::kFloat32 ? v1::COMPUTE_DTYPE_FLOAT32
                                                  : v1::COMPUTE_DTYPE_FLOAT64);
  out->set_device(device_to(request.device));
  if (request.rtol) out->set_rtol(*request.rtol);
  if (request.atol) out->set_atol(*request.atol);
  out->set_return_jacobian(request.return_jacobian);
  out->set_omit_outputs(!request.return_outputs);
  const VectorsWant& v = request.vectors;
  for (const auto& [on, word] : {std::pair<bool, const char*>{v.jacobian_row, "jacobian_row"},
                                 {v.jacobian_null, "jacobian_null"},
                                 {v.jacobian_left, "jacobian_left"},
                                 {v.ggn, "ggn"},
                                 {v.hessian, "hessian"}})
    if (on) out->add_vectors(word);
  out->set_vectors_k(v.k);
}

namespace {

void provenance_to_proto(const Provenance& p, v1::Provenance* out) {
  out->set_basin_version(p.basin_version);
  out->set_commit(p.commit);
  out->set_source_modified(p.source_modified);
  out->set_model_sha256(p.model_sha256);
  out->set_params_sha256(p.params_sha256);
  out->set_inputs_sha256(p.inputs_sha256);
  out->set_targets_sha256(p.targets_sha256);
  out->set_host(p.host);
  out->set_started_at(p.started_at);
  out->set_duration_ms(p.duration_ms);
  out->set_tolerance_rule(p.tolerance_rule);
  if (p.rtol) out->set_rtol(*p.rtol);
  if (p.atol) out->set_atol(*p.atol);
  for (const auto& [k, v] : p.methods) (*out->mutable_methods())[k] = v;
  for (const auto& [k, v] : p.seeds) (*out->mutable_seeds())[k] = v;
}

Provenance provenance_from_proto(const v1::Provenance& p) {
  Provenance out;
  out.basin_version = p.basin_version();
  out.commit = p.commit();
  out.source_modified = p.source_modified();
  out.model_sha256 = p.model_sha256();
  out.params_sha256 = p.params_sha256();
  out.inputs_sha256 = p.inputs_sha256();
  out.targets_sha256 = p.targets_sha256();
  out.host = p.host();
  out.started_at = p.started_at();
  out.duration_ms = p.duration_ms();
  out.tolerance_rule = p.tolerance_rule();
  if (p.has_rtol()) out.rtol = p.rtol();
  if (p.has_atol()) out.atol = p.atol();
  // Proto maps have no order; the JSON sorts them anyway.
  std::map<std::string, std::string> methods(p.methods().begin(), p.methods().end());
  out.methods.assign(methods.begin(), methods.end());
  std::map<std::string, int64_t> seeds(p.seeds().begin(), p.seeds().end());
  out.seeds.assign(seeds.begin(), seeds.end());
  return out;
}

void jacobian_to_proto(const JacobianSpectrum& s, v1::JacobianSpectrum* j) {
  j->mutable_singular_values()->Add(s.singular_values.begin(), s.singular_values.end());
  j->set_rank(s.rank);
  j->set_tolerance(s.tolerance);
  if (s.gap) j->set_gap(*s.gap);
  j->set_level_set_dim(s.level_set_dim);
  j->set_method(s.method);
  j->set_refined_from(s.refined_from);
}

JacobianSpectrum jacobian_from_proto(const v1::JacobianSpectrum& p) {
  JacobianSpectrum j;
  j.singular_values = repeated_to_vector(p.singular_values());
  j.rank = p.rank();
  j.tolerance = p.tolerance();
  if (p.has_gap()) j.gap = p.gap();
  j.level_set_dim = p.level_set_dim();
  j.method = p.method();
  j.refined_from = p.refined_from();
  return j;
}

void per_parameter_to_proto(const std::vector<ParameterSpectrum>& tensors, v1::AnalysisResult* out) {
  for (const ParameterSpectrum& t : tensors) {
    v1::ParameterSpectrum* p = out->add_per_parameter();
    p->set_name(t.name);
    p->mutable_shape()->Add(t.shape.begin(), t.shape.end());
    p->set_offset(t.offset);
    p->set_count(t.count);
    jacobian_to_proto(t.jacobian, p->mutable_jacobian());
    p->set_gram_trace_fraction(t.gram_trace_fraction);
    if (t.hessian_block) {
      v1::BlockSpectrum* b = p->mutable_hessian_block();
      b->mutable_eigenvalues()->Add(t.hessian_block->eigenvalues.begin(), t.hessian_block->eigenvalues.end());
      b->set_rank(t.hessian_block->rank);
      b->set_tolerance(t.hessian_block->tolerance);
    }
  }
}

std::vector<ParameterSpectrum> per_parameter_from_proto(const v1::AnalysisResult& r) {
  std::vector<ParameterSpectrum> tensors;
  for (const v1::ParameterSpectrum& p : r.per_parameter()) {
    ParameterSpectrum t;
    t.name = p.name();
    t.shape.assign(p.shape().begin(), p.shape().end());
    t.offset = p.offset();
    t.count = p.count();
    t.jacobian = jacobian_from_proto(p.jacobian());
    t.gram_trace_fraction = p.gram_trace_fraction();
    if (p.has_hessian_block())
      t.hessian_block = BlockSpectrum{repeated_to_vector(p.hessian_block().eigenvalues()), p.hessian_block().rank(),
                                      p.hessian_block().tolerance()};
    tensors.push_back(std::move(t));
  }
  return tensors;
}
void bound_to_proto(const RankBound& b, v1::RankBound* out) {
  out->set_rank_at_most(b.rank_at_most);
  out->set_why(b.why);
  out->set_exact(b.exact);
}
RankBound bound_from_proto(const v1::RankBound& p) { return {p.rank_at_most(), p.why(), p.exact()}; }
}  // namespace

void result_to_proto(const AnalysisResult& r, v1::AnalysisResult* out) {
  out->set_num_params(r.num_params);
  out->set_num_examples(r.num_examples);
  out->set_num_outputs(r.num_outputs);
  out->set_backend(r.backend);
  out->set_device(r.device);
  out->set_dtype(r.dtype);
  out->set_loss(r.loss);
  out->set_reduction(r.reduction);
  if (!r.outputs.empty()) {
    doubles_to_tensor(r.outputs, {r.num_examples, r.num_outputs}, out->mutable_outputs());
  }
  if (r.loss_value) out->set_loss_value(*r.loss_value);
  if (r.grad_norm) out->set_grad_norm(*r.grad_norm);
  if (r.jacobian) {
    jacobian_to_proto(*r.jacobian, out->mutable_jacobian());
    bound_to_proto(r.jacobian->bound, out->mutable_jacobian()->mutable_bound());
  }
  per_parameter_to_proto(r.per_parameter, out);
  // Matrix-free spectra (issue 12).
  auto ends_to = [](const EigenEnds& e, v1::EigenEnds* p) {
    p->mutable_eigenvalues()->Add(e.eigenvalues.begin(), e.eigenvalues.end());
    p->mutable_residual_norms()->Add(e.residual_norms.begin(), e.residual_norms.end());
    p->set_converged(e.converged);
    p->set_matvecs(e.matvecs);
    p->set_method(e.method);
  };
  if (r.hessian_top) ends_to(*r.hessian_top, out->mutable_hessian_top());
  if (r.hessian_bottom) ends_to(*r.hessian_bottom, out->mutable_hessian_bottom());
  if (r.ggn_top) ends_to(*r.ggn_top, out->mutable_ggn_top());
  if (r.ggn_bottom) ends_to(*r.ggn_bottom, out->mutable_ggn_bottom());
  auto trace_to = [](const TraceEstimate& t, v1::TraceEstimate* p) {
    p->set_estimate(t.estimate);
    p->set_std_error(t.std_error);
    p->set_probes(t.probes);
    p->set_matvecs(t.matvecs);
    p->set_method(t.method);
  };
  if (r.hessian_trace) trace_to(*r.hessian_trace, out->mutable_hessian_trace());
  if (r.ggn_trace) trace_to(*r.ggn_trace, out->mutable_ggn_trace());
  auto density_to = [](const SpectralDensity& d, v1::SpectralDensity* p) {
    for (size_t j = 0; j < d.nodes.size(); ++j) {
      v1::QuadratureProbe* q = p->add_probes_quadrature();
      q->mutable_nodes()->Add(d.nodes[j].begin(), d.nodes[j].end());
      if (j < d.weights.size()) q->mutable_weights()->Add(d.weights[j].begin(), d.weights[j].end());
    }
    p->set_probes(d.probes);
    p->set_steps(d.steps);
    p->set_matvecs(d.matvecs);
    p->set_method(d.method);
    p->mutable_grid()->Add(d.grid.begin(), d.grid.end());
    p->mutable_density()->Add(d.density.begin(), d.density.end());
    p->set_bandwidth(d.bandwidth);
  };
  if (r.hessian_density) density_to(*r.hessian_density, out->mutable_hessian_density());
  if (r.ggn_density) density_to(*r.ggn_density, out->mutable_ggn_density());
  if (r.ggn) {
    v1::GgnSpectrum* g = out->mutable_ggn();
    g->mutable_eigenvalues()->Add(r.ggn->eigenvalues.begin(), r.ggn->eigenvalues.end());
    g->set_rank(r.ggn->rank);
    g->set_tolerance(r.ggn->tolerance);
    if (r.ggn->gap) g->set_gap(*r.ggn->gap);
    g->set_method(r.ggn->method);
    g->set_refined_from(r.ggn->refined_from);
    bound_to_proto(r.ggn->bound, g->mutable_bound());
  }
  if (r.hessian) {
    v1::HessianSpectrum* h = out->mutable_hessian();
    h->mutable_eigenvalues()->Add(r.hessian->eigenvalues.begin(), r.hessian->eigenvalues.end());
    h->set_rank(r.hessian->rank);
    h->set_tolerance(r.hessian->tolerance);
    h->set_residual_rel(r.hessian->residual_rel);
    h->mutable_residual_eigenvalues()->Add(r.hessian->residual_eigenvalues.begin(),
                                           r.hessian->residual_eigenvalues.end());
    if (r.hessian->gap) h->set_gap(*r.hessian->gap);
    h->set_method(r.hessian->method);
    h->set_refined_from(r.hessian->refined_from);
    bound_to_proto(r.hessian->bound, h->mutable_bound());
  }
  if (!r.jacobian_matrix.empty()) {
    doubles_to_tensor(r.jacobian_matrix, {r.num_examples * r.num_outputs, r.num_params},
                      out->mutable_jacobian_matrix());
  }
  for (const VectorArray& v : r.vectors) {
    v1::VectorBlob* b = out->add_vectors();
    b->set_name(v.name);
    b->set_blob_id(v.blob_id);
    b->mutable_shape()->Add(v.shape.begin(), v.shape.end());
    b->set_dtype("float64");
    b->mutable_indices()->Add(v.indices.begin(), v.indices.end());
  }
  v1::Timings* t = out->mutable_timings();
  t->set_forward_ms(r.timings.forward_ms);
  t->set_jacobian_ms(r.timings.jacobian_ms);
  t->set_solve_ms(r.timings.solve_ms);
  t->set_hessian_ms(r.timings.hessian_ms);
  provenance_to_proto(r.provenance, out->mutable_provenance());
}

AnalysisResult result_from_proto(const v1::AnalysisResult& p) {
  AnalysisResult r;
  r.num_params = p.num_params();
  r.num_examples = p.num_examples();
  r.num_outputs = p.num_outputs();
  r.backend = p.backend();
  r.device = p.device();
  r.dtype = p.dtype();
  r.loss = p.loss();
  r.reduction = p.reduction();
  if (p.has_outputs()) r.outputs = tensor_doubles(p.outputs(), "result.outputs");
  if (p.has_loss_value()) r.loss_value = p.loss_value();
  if (p.has_grad_norm()) r.grad_norm = p.grad_norm();
  if (p.has_jacobian()) {
    r.jacobian = jacobian_from_proto(p.jacobian());
    r.jacobian->bound = bound_from_proto(p.jacobian().bound());
  }
  r.per_parameter = per_parameter_from_proto(p);
  if (p.has_ggn()) {
    GgnSpectrum g;
    g.eigenvalues = repeated_to_vector(p.ggn().eigenvalues());
    g.rank = p.ggn().rank();
    g.tolerance = p.ggn().tolerance();
    if (p.ggn().has_gap()) g.gap = p.ggn().gap();
    g.method = p.ggn().method();
    g.refined_from = p.ggn().refined_from();
    g.bound = bound_from_proto(p.ggn().bound());
    r.ggn = std::move(g);
  }
  if (p.has_hessian()) {
    HessianSpectrum h;
    h.eigenvalues = repeated_to_vector(p.hessian().eigenvalues());
    h.rank = p.hessian().rank();
    h.tolerance = p.hessian().tolerance();
    h.residual_rel = p.hessian().residual_rel();
    h.residual_eigenvalues = repeated_to_vector(p.hessian().residual_eigenvalues());
    if (p.hessian().has_gap()) h.gap = p.hessian().gap();
    h.method = p.hessian().method();
    h.refined_from = p.hessian().refined_from();
    h.bound = bound_from_proto(p.hessian().bound());
    r.hessian = std::move(h);
  }
  auto ends_from = [](const v1::EigenEnds& q) {
    EigenEnds e;
    e.eigenvalues = repeated_to_vector(q.eigenvalues());
    e.residual_norms = repeated_to_vector(q.residual_norms());
    e.converged = q.converged();
    e.matvecs = q.matvecs();
    e.method = q.method();
    return e;
  };
  if (p.has_hessian_top()) r.hessian_top = ends_from(p.hessian_top());
  if (p.has_hessian_bottom()) r.hessian_bottom = ends_from(p.hessian_bottom());
  if (p.has_ggn_top()) r.ggn_top = ends_from(p.ggn_top());
  if (p.has_ggn_bottom()) r.ggn_bottom = ends_from(p.ggn_bottom());
  auto trace_from = [](const v1::TraceEstimate& q) {
    return TraceEstimate{q.estimate(), q.std_error(), q.probes(), q.matvecs(), q.method()};
  };
  if (p.has_hessian_trace()) r.hessian_trace = trace_from(p.hessian_trace());
  if (p.has_ggn_trace()) r.ggn_trace = trace_from(p.ggn_trace());
  auto density_from = [](const v1::SpectralDensity& q) {
    SpectralDensity d;
    for (const v1::QuadratureProbe& pr : q.probes_quadrature()) {
      d.nodes.push_back(repeated_to_vector(pr.nodes()));
      d.weights.push_back(repeated_to_vector(pr.weights()));
    }
    d.probes = q.probes();
    d.steps = q.steps();
    d.matvecs = q.matvecs();
    d.method = q.method();
    d.grid = repeated_to_vector(q.grid());
    d.density = repeated_to_vector(q.density());
    d.bandwidth = q.bandwidth();
    return d;
  };
  if (p.has_hessian_density()) r.hessian_density = density_from(p.hessian_density());
  if (p.has_ggn_density()) r.ggn_density = density_from(p.ggn_density());
  if (p.has_jacobian_matrix()) {
    r.jacobian_matrix = tensor_doubles(p.jacobian_matrix(), "result.jacobian_matrix");
  }
  for (const v1::VectorBlob& b : p.vectors()) {
    VectorArray v;
    v.name = b.name();
    v.blob_id = b.blob_id();
    v.shape.assign(b.shape().begin(), b.shape().end());
    v.indices.assign(b.indices().begin(), b.indices().end());
    r.vectors.push_back(std::move(v));
  }
  r.timings.forward_ms = p.timings().forward_ms();
  r.timings.jacobian_ms = p.timings().jacobian_ms();
  r.timings.solve_ms = p.timings().solve_ms();
  r.timings.hessian_ms = p.timings().hessian_ms();
  if (p.has_provenance()) r.provenance = provenance_from_proto(p.provenance());
  return r;
}

}  // namespace basin::wire
