#include "analyze_args.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "basin/error.hpp"
#include "basin/npy.hpp"
#include "save_dir.hpp"
#ifdef BASIN_HAVE_ONNX
#include "basin/onnx_import.hpp"
#endif

namespace basin::cli {
namespace {

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(v))
    invalid_argument(flag + ": got '" + text + "', expected a finite number");
  return v;
}

int64_t parse_int(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end == nullptr || *end != '\0' || v <= 0)
    invalid_argument(flag + ": got '" + text + "', expected a positive integer");
  return v;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) invalid_argument(what + ": cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string usage() {
  return R"(usage: basin analyze (--local | --server HOST:PORT) --model spec.json|model.onnx
                     [--params p.npy] --inputs X.npy [--targets Y.npy]     (X: (n, ...))
                     [--loss mse|cross_entropy|none] [--reduction mean|sum]
                     [--want jacobian,ggn,hessian,per_parameter] [--method auto|gram|normal|svd]
                     [--dtype float64|float32] [--device auto|cpu|cuda]
                     [--rtol R] [--atol A] [--hessian-limit N] [--max-memory GiB] [--max-layers N]
                     [--constants NAME,NAME...]
                     [--save-jacobian G.npy] [--json [--pretty]] [--save-dir DIR]
                     [--vectors jacobian_row,jacobian_null,jacobian_left,ggn,hessian [--vectors-k K]]
                     [--want …,hessian_top,ggn_top,hessian_trace,ggn_trace,hessian_density,ggn_density]
                     [--top-k K] [--bottom-k K] [--lanczos-steps M] [--lanczos-block B] [--probes P]
                     [--seed S] [--tol T] [--spectra-method auto|dense|matrix_free] [--save-eigenvectors DIR]
                     [--token T] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--timeout S]
       --params is a vector (N,) or checkpoints (B, N): one result per checkpoint, in order
       --constants: ONNX initialisers to keep constant (default: every float initialiser in a
         weight/bias/scale slot is a parameter, BatchNormalization's running statistics are not)
       --vectors writes DIR/<name>.npy beside DIR/result.json (needs --save-dir; one checkpoint)
       matrix-free spectra (from Hessian-/GGN-vector products, never an N x N matrix):
         *_top: block Lanczos, the --top-k largest (and --bottom-k smallest) eigenvalues, each with
           its residual |Hv - lambda v| and "converged" (every residual <= --tol * max|lambda|,
           default 1e-8); --lanczos-steps M = the restart length (vectors held), memory about
           (M + K + B) * N * 8 bytes + the model; --save-eigenvectors DIR writes the vectors as .npy
         *_trace: Hutch++ with --probes P products (default 30) and a standard error
         *_density: stochastic Lanczos quadrature, --probes P (default 4) of M steps (default 80),
           nodes and weights per probe, seeded by --seed (default 0): reproducible
         --spectra-method auto (default): the exact dense solve from N products where
           N <= --hessian-limit (4096), matrix-free beyond; dense / matrix_free force one
       basin submit|watch|jobs|cancel|result|info|health ...   (remote; see README)
       basin --version
)";
}

AnalyzeOptions parse_analyze_args(const std::vector<std::string>& args, bool allow_unknown) {
  AnalyzeOptions o;
  o.request.device = Device::kAuto;
  int64_t vectors_k = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) invalid_argument(flag + ": missing value");
      return args[++i];
    };
    if (flag == "--local") o.local = true;
    else if (flag == "--server") o.server = value();
    else if (flag == "--token") o.token = value();
    else if (flag == "--tls-ca") o.tls_ca = value();
    else if (flag == "--tls-cert") o.tls_cert = value();
    else if (flag == "--tls-key") o.tls_key = value();
    else if (flag == "--timeout") {
      o.timeout_s = parse_number(flag, value());
      if (o.timeout_s <= 0) invalid_argument("--timeout: expected a positive number of seconds");
    }
    else if (flag == "--json") o.json = true;
    else if (flag == "--pretty") o.pretty = o.json = true;
    else if (flag == "--model") o.model_path = value();
    else if (flag == "--params") o.params_path = value();
    else if (flag == "--inputs") o.inputs_path = value();
    else if (flag == "--targets") o.targets_path = value();
    else if (flag == "--save-jacobian") o.save_jacobian = value();
    else if (flag == "--save-dir") o.save_dir = value();
    else if (flag == "--constants") {
      const std::string list = value();
      size_t start = 0;
      while (start <= list.size()) {
        const size_t comma = std::min(list.find(',', start), list.size());
        if (comma == start) invalid_argument("--constants: an empty name in '" + list + "'");
        o.constants.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    }
    else if (flag == "--vectors") {
      try {
        o.request.vectors = parse_vectors(value());
      } catch (const Error& e) {
        invalid_argument(std::string("--") + e.what());
      }
    } else if (flag == "--vectors-k") {
      vectors_k = parse_int(flag, value());
    }
    else if (flag == "--loss") {
      const std::string v = value();
      if (!loss_from_name(v, &o.request.loss))
        invalid_argument("--loss: got '" + v + "', expected mse, cross_entropy or none");
    } else if (flag == "--reduction") {
      const std::string v = value();
      if (!reduction_from_name(v, &o.request.reduction))
        invalid_argument("--reduction: got '" + v + "', expected mean or sum");
    } else if (flag == "--want") {
      o.request.want = parse_want(value());
      o.want_given = true;
    } else if (flag == "--method") {
      const std::string v = value();
      if (!method_from_name(v, &o.request.method))
        invalid_argument("--method: got '" + v + "', expected auto, gram, normal or svd");
    } else if (flag == "--dtype") {
      const std::string v = value();
      if (!dtype_from_name(v, &o.request.dtype))
        invalid_argument("--dtype: got '" + v + "', expected float64 or float32");
    } else if (flag == "--device") {
      const std::string v = value();
      if (!device_from_name(v, &o.request.device))
        invalid_argument("--device: got '" + v + "', expected auto, cpu or cuda");
    } else if (flag == "--rtol") {
      o.request.rtol = parse_number(flag, value());
    } else if (flag == "--atol") {
      o.request.atol = parse_number(flag, value());
    } else if (flag == "--hessian-limit") {
      o.request.limits.max_hessian_params = parse_int(flag, value());
    } else if (flag == "--max-layers") {
      o.request.limits.max_layers = parse_int(flag, value());
    } else if (flag == "--top-k") {
      o.request.spectra.top_k = parse_int(flag, value());
    } else if (flag == "--bottom-k") {
      o.request.spectra.bottom_k = parse_int(flag, value());
    } else if (flag == "--lanczos-steps") {
      o.request.spectra.lanczos_steps = parse_int(flag, value());
    } else if (flag == "--lanczos-block") {
      o.request.spectra.lanczos_block = parse_int(flag, value());
    } else if (flag == "--probes") {
      o.request.spectra.probes = parse_int(flag, value());
      if (o.request.spectra.probes <= 0) invalid_argument("--probes: expected a positive number of probes");
    } else if (flag == "--seed") {
      o.request.spectra.seed = static_cast<uint64_t>(parse_int(flag, value()));
    } else if (flag == "--tol") {
      o.request.spectra.tol = parse_number(flag, value());
      if (!(o.request.spectra.tol > 0)) invalid_argument("--tol: expected a number > 0");
    } else if (flag == "--spectra-method") {
      o.request.spectra.method = value();
      if (o.request.spectra.method != "auto" && o.request.spectra.method != "dense" &&
          o.request.spectra.method != "matrix_free")
        invalid_argument("--spectra-method: got '" + o.request.spectra.method + "', expected auto, dense or matrix_free");
    } else if (flag == "--save-eigenvectors") {
      o.save_eigenvectors = value();
      o.request.spectra.eigenvectors = true;
    } else if (flag == "--max-memory") {
      const double gib = parse_number(flag, value());
      if (gib <= 0) invalid_argument("--max-memory: expected a positive number of GiB");
      o.request.limits.max_memory_bytes = static_cast<uint64_t>(gib * double(1ull << 30));
    } else if (allow_unknown) {
      o.rest.push_back(flag);
    } else {
      invalid_argument("unknown flag '" + flag + "'\n" + usage());
    }
  }
  if (o.local && !o.server.empty()) invalid_argument("--local and --server: give one, not both");
  if (!o.local && o.server.empty())
    invalid_argument("analyze: say where to run it: --local (in this process) or --server HOST:PORT");
  if (o.model_path.empty()) invalid_argument("--model: missing; expected a JSON model spec or an .onnx file");
  if (o.inputs_path.empty())
    invalid_argument("--inputs: missing; expected an .npy array of shape (n, input_dim), or (n, ...) of the ONNX model's input shape");
  if (!o.save_jacobian.empty()) o.request.return_jacobian = true;
  // `basin submit` (allow_unknown) queues a job: its files are written later, by
  // `basin result ID --save-dir DIR`.
  if (allow_unknown && !o.save_dir.empty())
    invalid_argument("--save-dir: basin submit only queues the job; write its files with basin result ID --save-dir DIR");
  if (o.request.vectors.any() && o.save_dir.empty() && !allow_unknown)
    invalid_argument("--vectors: needs --save-dir DIR (the vectors are written there as .npy files, named in "
                     "DIR/result.json)");
  if (vectors_k > 0 && !o.request.vectors.any())
    invalid_argument("--vectors-k: only with --vectors (it says how many vectors of each kind to keep)");
  o.request.vectors.k = vectors_k;
  if (!o.save_dir.empty()) prepare_save_dir(o.save_dir);
  if (!o.save_eigenvectors.empty()) prepare_save_dir(o.save_eigenvectors);
  if (o.local && (!o.tls_ca.empty() || !o.tls_cert.empty() || !o.tls_key.empty() || o.timeout_s > 0))
    invalid_argument("--tls-ca/--tls-cert/--tls-key/--timeout: only with --server, not --local");
  if (o.tls_cert.empty() != o.tls_key.empty())
    invalid_argument("--tls-cert and --tls-key: give both (mutual TLS) or neither");
  if (o.token.empty()) {
    if (const char* env = std::getenv("BASIN_TOKEN")) o.token = env;
  }
  if (o.tls_ca.empty() && !o.local) {
    if (const char* env = std::getenv("BASIN_TLS_CA")) o.tls_ca = env;
  }
  if (!o.tls_cert.empty() && o.tls_ca.empty())
    invalid_argument("--tls-cert: mutual TLS also needs --tls-ca (the server's CA)");
  return o;
}

namespace {
// "3, 32, 32" for messages that print (n, 3, 32, 32).
std::string per_example_dims(const Shape& s) {
  std::string out;
  for (int64_t d : s) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return out;
}
}  // namespace

void load_request_files(AnalyzeOptions& o) {
  AnalysisRequest& r = o.request;
  std::vector<double> onnx_params;
  // The inputs first: their per-example shape (X.shape[1:]) resolves an ONNX graph's dynamic
  // dimensions.
  const NpyArray x = read_npy(o.inputs_path, "--inputs");
  // Integer inputs are token ids, for an ONNX model whose input is INT32/INT64 (checked below).
  if (!x.is_float() && !ends_with(o.model_path, ".onnx"))
    invalid_argument("--inputs " + o.inputs_path + ": dtype " + npy_dtype_name(x.dtype) + ", expected float32 or float64");
  o.inputs_shape = x.shape;
  o.onnx = ends_with(o.model_path, ".onnx");
  if (!o.constants.empty() && !o.onnx)
    invalid_argument("--constants: only with an .onnx --model (a JSON spec's parameters are its dense layers)");
  if (o.onnx) {
#ifdef BASIN_HAVE_ONNX  // ONNX-HOOK
    ImportBounds bounds;  // the same node bound as basind's (4 x max_layers)
    bounds.max_nodes = 4 * std::min<int64_t>(r.limits.max_layers, INT64_MAX / 4);
    bounds.constant_names = o.constants;
    if (x.shape.size() >= 2) bounds.input_shape.assign(x.shape.begin() + 1, x.shape.end());
    ImportedModel imported = import_onnx_file(o.model_path, bounds);
    onnx_params = std::move(imported.params);
    // A dense chain travels as its chain form (the same θ), as the JSON spec and the server's
    // layer list do; any other network as the graph.
    if (!imported.model.layers.empty()) r.model = std::move(imported.model);
    else r.graph = std::make_shared<const Graph>(std::move(imported.graph));
#else
    throw Error(ErrorCode::kUnimplemented, "--model " + o.model_path + ": this build of basin has no ONNX importer");
#endif
  } else {
    try {
      r.model = parse_model_json(read_text_file(o.model_path, "--model"));
    } catch (const Error& e) {
      const std::string what = e.what();
      throw Error(e.code(), what.rfind("--model", 0) == 0 ? what : "--model " + o.model_path + ": " + what);
    }
  }
  const int64_t N = r.graph ? r.graph->num_params() : r.model.num_params();
  const int64_t d = r.graph ? r.graph->input_size() : r.model.input_dim;
  const int64_t k = r.graph ? r.graph->output_dim() : r.model.output_dim();

  if (!o.params_path.empty()) {
    const NpyArray p = read_npy(o.params_path, "--params");
    if (!p.is_float())
      invalid_argument("--params " + o.params_path + ": dtype " + npy_dtype_name(p.dtype) + ", expected float32 or float64");
    if (p.shape.size() != 1 && p.shape.size() != 2)
      invalid_argument("--params " + o.params_path + ": shape " + p.shape_string() + ", expected a 1-D vector of " +
                       std::to_string(N) + " values, or checkpoints of shape (B, " + std::to_string(N) + ")");
    if (p.shape.size() == 2 && (p.shape[0] < 1 || p.shape[1] != N))
      invalid_argument("--params " + o.params_path + ": shape " + p.shape_string() + ", expected checkpoints of shape (B, " +
                       std::to_string(N) + ") with B >= 1 (N = the parameter count of the model)");
    r.params = p.to_double();
    if (p.shape.size() == 2) {
      const int64_t B = p.shape[0];
      if (B > 1 && !o.save_jacobian.empty())
        invalid_argument("--save-jacobian: writes G for one parameter vector, but --params holds " + std::to_string(B) +
                         " checkpoints; pass one row");
      if (B > 1 && !o.save_dir.empty())
        invalid_argument("--save-dir: writes the result (and --vectors) of one parameter vector, but --params holds " +
                         std::to_string(B) + " checkpoints; pass one row");
      o.checkpoints.resize(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) o.checkpoints[b].assign(r.params.begin() + b * N, r.params.begin() + (b + 1) * N);
      r.params = o.checkpoints.front();
      if (B == 1) o.checkpoints.clear();
    }
  } else if (!onnx_params.empty()) {
    r.params = std::move(onnx_params);
  } else {
    invalid_argument("--params: missing; expected an .npy vector of " + std::to_string(N) +
                     " parameters (PyTorch parameters_to_vector order)");
  }

  // (n, d), or (n, ...) of d values per example taken row-major (nn.Flatten's order): a chain
  // takes (n, 3, 2, 2) for input_dim 12; a graph its per-example shape, or the same values flat.
  int64_t per_example = 1;
  for (size_t i = 1; i < x.shape.size(); ++i) per_example *= x.shape[i];
  if (x.shape.size() < 2 || per_example != d)
    invalid_argument("--inputs " + o.inputs_path + ": shape " + x.shape_string() + ", expected (n, " + std::to_string(d) +
                     ")" + (r.graph ? " or (n, " + per_example_dims(r.graph->input_shape()) + ")" : std::string()) +
                     " to match the model's input (" + std::to_string(d) + " values per example)");
  const bool token_model = r.graph && r.graph->input() >= 0 && r.graph->value(r.graph->input()).integer;
  if (token_model && x.is_float())
    invalid_argument("--inputs " + o.inputs_path + ": dtype " + npy_dtype_name(x.dtype) +
                     ", expected integer token ids (int32/int64): the model's input is an integer tensor");
  if (!token_model && !x.is_float())
    invalid_argument("--inputs " + o.inputs_path + ": dtype " + npy_dtype_name(x.dtype) +
                     ", expected float32 or float64 (the model's input is a float tensor)");
  r.num_examples = x.shape[0];
  r.inputs = x.to_double();  // token ids are exact in double

  if (!o.targets_path.empty()) {
    const NpyArray y = read_npy(o.targets_path, "--targets");
    const std::string where = "--targets " + o.targets_path;
    if (r.loss == Loss::kCrossEntropy) {
      if (y.is_float())
        invalid_argument(where + ": dtype " + npy_dtype_name(y.dtype) +
                         ", expected integer class labels (int32/int64) for loss cross_entropy");
      // A sequence output [n, .., C] takes one label per position: labels [n, ..] (loss.hpp).
      std::vector<int64_t> want = {r.num_examples};
      std::string want_text = "(" + std::to_string(r.num_examples);
      const Shape out = r.graph && r.graph->output() >= 0 ? r.graph->value(r.graph->output()).shape : Shape{};
      if (out.size() >= 2 && out.back() < k) {  // C = the last axis (as the engine's loss_classes)
        want.insert(want.end(), out.begin(), out.end() - 1);
        for (size_t d = 0; d + 1 < out.size(); ++d) want_text += ", " + std::to_string(out[d]);
        want_text += ") labels, one per position of the output [n, " + per_example_dims(out) + "]";
      } else {
        want_text += ",) labels, one per example";
      }
      if (y.shape != want) invalid_argument(where + ": shape " + y.shape_string() + ", expected " + want_text);
      r.labels = y.to_int64();
    } else if (r.loss == Loss::kMse) {
      if (!y.is_float())
        invalid_argument(where + ": dtype " + npy_dtype_name(y.dtype) + ", expected float32/float64 targets for loss mse");
      const bool ok = (y.shape.size() == 2 && y.shape[0] == r.num_examples && y.shape[1] == k) ||
                      (k == 1 && y.shape.size() == 1 && y.shape[0] == r.num_examples);
      if (!ok)
        invalid_argument(where + ": shape " + y.shape_string() + ", expected (" + std::to_string(r.num_examples) + ", " +
                         std::to_string(k) + ") = (n, k)");
      r.targets = y.to_double();
    } else {
      invalid_argument("--targets given with --loss none; pass --loss mse or --loss cross_entropy");
    }
  } else if (r.loss != Loss::kNone) {
    invalid_argument(std::string("--targets: missing; loss ") + loss_name(r.loss) + " needs " +
                     (r.loss == Loss::kMse ? "float targets of shape (n, k)" : "integer labels of shape (n,)"));
  }

  if (!o.want_given) {
    // Default: everything the loss allows; the exact Hessian only when it is small enough.
    r.want = Want{true, r.loss != Loss::kNone, r.loss != Loss::kNone && N <= r.limits.max_hessian_params};
  }
}

void print_results(const AnalyzeOptions& o, const std::vector<AnalysisResult>& results) {
  for (size_t b = 0; b < results.size(); ++b) {
    const AnalysisResult& result = results[b];
    if (!o.save_jacobian.empty()) {
      write_npy(o.save_jacobian, make_npy_f64({result.num_examples * result.num_outputs, result.num_params},
                                              result.jacobian_matrix));
    }
    if (!o.save_dir.empty()) write_save_dir(o.save_dir, result, result_to_json(result, o.json && !o.pretty ? -1 : 2));
    // --save-eigenvectors DIR: the eigenvectors (and result.json naming them) of the matrix-free spectra.
    if (!o.save_eigenvectors.empty() && o.save_eigenvectors != o.save_dir)
      write_save_dir(o.save_eigenvectors, result, result_to_json(result, 2));
    if (o.json) {
      std::cout << result_to_json(result, o.pretty ? 2 : -1) << std::endl;
    } else {
      if (results.size() > 1) std::cout << (b ? "\n" : "") << "checkpoint " << b << " of " << results.size() << "\n";
      std::cout << summary(o.request, result);
      if (!o.save_jacobian.empty()) std::cout << "G written to " << o.save_jacobian << "\n";
      if (!o.save_dir.empty())
        std::cout << "result.json" << (result.vectors.empty() ? "" : " and " + std::to_string(result.vectors.size()) + " .npy file(s)")
                  << " written to " << o.save_dir << "\n";
    }
  }
}

}  // namespace basin::cli
