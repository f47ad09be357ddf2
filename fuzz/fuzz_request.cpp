// Structure-aware libFuzzer target over the server's request path: wire message ->
// wire::decode_request (proto -> AnalysisRequest, which ends in basin::validate_request) ->
// for small valid requests, basin::analyze_checkpoints under tight limits.
//
// The input is a serialised basin.v1.AnalyzeRequest, or with -DBASIN_FUZZ_SUBMIT a
// basin.v1.SubmitJobRequest (the submit path: decode, then the store's serialise/parse round
// trip, then decode again, which is what a queued job does when it starts).
//
// LLVMFuzzerCustomMutator parses the input, mutates the message with protobuf reflection
// (numbers, enum values including unknown ones, shapes, dtypes, tensor byte lengths, special
// floats, dropped/duplicated/many layers, swapped oneofs) and serialises it back, so most
// inputs stay parseable and reach the engine's checks instead of dying in the wire parser;
// it falls back to libFuzzer's byte mutation when the input does not parse, and mixes some in
// anyway so that the parser itself is fuzzed.
//
// Outcomes: basin::Error with a request-level code is normal. Anything else is a bug and
// aborts: a crash or UB (ASan/UBSan), another exception type, kInternal out of decoding,
// kInvalidArgument out of analyze() for a request validation accepted, a result whose sizes
// disagree with the request, or a decoded request that does not survive the CLI's re-encoding
// (wire::request_to_proto) or the job store's round trip unchanged.
//
// Blob ids stand in for the store: "hex:<hex digits>" reads as the blob those digits spell (so
// a seed can carry an ONNX model or a .npy file and the mutator can corrupt it; hex because
// proto3 strings must be UTF-8), a "sha256:" id is an
// unknown blob (kNotFound), anything else malformed (kInvalidArgument) -- the same three
// outcomes as BasinService::read_blob.
//
// Built and run by fuzz/run_fuzz.sh BUILD_DIR SECONDS request.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>

#include "basin/analysis.hpp"
#include "basin/error.hpp"
#include "basin/v1/basin.pb.h"
#include "basin/wire/proto_convert.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

#ifdef BASIN_FUZZ_SUBMIT
using TopMessage = basin::v1::SubmitJobRequest;
#else
using TopMessage = basin::v1::AnalyzeRequest;
#endif

[[noreturn]] void bug(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "fuzz_request: BUG: %s %s\n", what, detail.c_str());
  std::abort();
}

// ---------------------------------------------------------------- the target

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "hex:<digits>" -> bytes; false when the digits are not pairs of [0-9a-f].
bool hex_blob(const std::string& id, std::vector<uint8_t>* out) {
  if (id.rfind("hex:", 0) != 0 || (id.size() - 4) % 2 != 0) return false;
  out->clear();
  for (size_t i = 4; i < id.size(); i += 2) {
    const int hi = hex_digit(id[i]), lo = hex_digit(id[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return true;
}

std::string to_hex_blob(const uint8_t* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s = "hex:";
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

std::vector<uint8_t> read_blob(const std::string& id, const std::string& field) {
  std::vector<uint8_t> bytes;
  if (hex_blob(id, &bytes)) return bytes;
  if (id.rfind("sha256:", 0) == 0) {
    throw basin::Error(basin::ErrorCode::kNotFound, field + ": unknown blob");
  }
  basin::invalid_argument(field + ": malformed blob id");
}

// The limits the engine runs under here: tiny, so that any request that gets through is
// milliseconds of work and the fuzzer explores instead of computing.
basin::Limits tight_limits() {
  basin::Limits l;
  l.max_hessian_params = 48;
  l.max_dense_dim = 256;
  l.max_memory_bytes = 16ull << 20;
  l.max_jacobian_bytes = 1ull << 20;
  return l;
}

bool request_level(basin::ErrorCode c) {
  return c == basin::ErrorCode::kInvalidArgument || c == basin::ErrorCode::kResourceExhausted ||
         c == basin::ErrorCode::kNotFound || c == basin::ErrorCode::kUnimplemented;
}

// Decoding outcome: either the request or the error, comparable across two decodings.
struct Outcome {
  bool ok = false;
  basin::ErrorCode code = basin::ErrorCode::kInternal;
  std::string message;
  basin::wire::DecodedRequest decoded;
};

Outcome decode(const basin::v1::AnalyzeRequest& req) {
  Outcome o;
  try {
    // The server's default limits: validation has to be fast under them too.
    o.decoded = basin::wire::decode_request(req, read_blob, basin::Device::kCpu, basin::Limits{});
    o.ok = true;
  } catch (const basin::Error& e) {
    if (!request_level(e.code())) bug("decode_request threw a non-request error:", e.what());
    o.code = e.code();
    o.message = e.what();
  }
  return o;
}

bool same_model(const basin::Model& a, const basin::Model& b) {
  if (a.input_dim != b.input_dim || a.layers.size() != b.layers.size()) return false;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const basin::Layer& x = a.layers[i];
    const basin::Layer& y = b.layers[i];
    if (x.kind != y.kind) return false;
    if (x.kind == basin::Layer::Kind::kDense) {
      if (x.out != y.out || x.bias != y.bias) return false;
    } else if (x.activation != y.activation ||
               (x.activation == basin::Activation::kLeakyRelu && x.alpha != y.alpha)) {
      return false;
    }
  }
  return true;
}

// Field-by-field equality of two decodings (everything analyze() reads).
bool same_request(const basin::wire::DecodedRequest& a, const basin::wire::DecodedRequest& b) {
  const basin::AnalysisRequest& x = a.base;
  const basin::AnalysisRequest& y = b.base;
  return same_model(x.model, y.model) && a.checkpoints == b.checkpoints &&
         x.num_examples == y.num_examples && x.inputs == y.inputs && x.targets == y.targets &&
         x.labels == y.labels && x.loss == y.loss && x.reduction == y.reduction &&
         x.want.jacobian == y.want.jacobian && x.want.ggn == y.want.ggn &&
         x.want.hessian == y.want.hessian && x.method == y.method && x.dtype == y.dtype &&
         x.device == y.device && x.rtol == y.rtol && x.atol == y.atol &&
         x.return_jacobian == y.return_jacobian && x.return_outputs == y.return_outputs;
}

// The CLI's --server path re-encodes an engine request: what decoding accepted must come back
// identical through wire::request_to_proto.
void check_reencoding(const basin::wire::DecodedRequest& d) {
  basin::AnalysisRequest r = d.base;
  r.params = d.checkpoints.front();
  basin::v1::AnalyzeRequest again;
  basin::wire::request_to_proto(r, &again, d.checkpoints);
  const Outcome o = decode(again);
  if (!o.ok) bug("a decoded request does not decode after request_to_proto:", o.message);
  if (!same_request(d, o.decoded)) bug("request_to_proto changed the request");
}

void check_result(const basin::AnalysisRequest& r, const basin::AnalysisResult& res) {
  const int64_t N = r.model.num_params();
  const int64_t n = r.num_examples;
  const int64_t k = r.model.output_dim();
  if (res.num_params != N || res.num_examples != n || res.num_outputs != k) {
    bug("result dimensions disagree with the request");
  }
  if (r.return_outputs && static_cast<int64_t>(res.outputs.size()) != n * k) {
    bug("outputs size is not n*k");
  }
  const int64_t m = std::min(n * k, N);
  if (r.want.jacobian) {
    if (!res.jacobian) bug("jacobian asked for but missing");
    if (static_cast<int64_t>(res.jacobian->singular_values.size()) != m) {
      bug("singular value count is not min(n*k, N)");
    }
    if (res.jacobian->rank < 0 || res.jacobian->rank > m ||
        res.jacobian->level_set_dim != N - res.jacobian->rank) {
      bug("jacobian rank / level set dimension inconsistent");
    }
  }
  if (r.want.ggn && (!res.ggn || static_cast<int64_t>(res.ggn->eigenvalues.size()) != m)) {
    bug("ggn eigenvalue count is not min(n*k, N)");
  }
  if (r.want.hessian && (!res.hessian || static_cast<int64_t>(res.hessian->eigenvalues.size()) != N)) {
    bug("hessian eigenvalue count is not N");
  }
  if (r.return_jacobian && static_cast<int64_t>(res.jacobian_matrix.size()) != n * k * N) {
    bug("jacobian matrix size is not n*k*N");
  }
}

// Runs the engine on a request small enough to be cheap; validation under the tight limits
// decides, and whatever it accepts analyze() must handle without kInvalidArgument.
void maybe_analyze(const basin::wire::DecodedRequest& d) {
  const basin::AnalysisRequest& base = d.base;
  const int64_t N = base.model.num_params();
  const int64_t rows = base.num_examples * base.model.output_dim();
  if (N > 2048 || rows > 512 || d.checkpoints.size() > 3 || base.model.layers.size() > 64) return;
  basin::AnalysisRequest r = base;
  r.limits = tight_limits();
  r.params = d.checkpoints.front();
  try {
    basin::validate_request(r);
  } catch (const basin::Error& e) {
    if (!request_level(e.code())) bug("validate_request threw a non-request error:", e.what());
    return;
  }
  try {
    const std::vector<basin::AnalysisResult> results =
        basin::analyze_checkpoints(r, d.checkpoints);
    if (results.size() != d.checkpoints.size()) bug("one result per checkpoint expected");
    for (const basin::AnalysisResult& res : results) check_result(r, res);
  } catch (const basin::Error& e) {
    // Unavailable: device cuda in a build without it. ResourceExhausted: estimates made after
    // planning. Internal: a LAPACK routine that did not converge on hostile values. Invalid
    // argument only for values that overflow in the computation (finite inputs whose forward
    // pass, loss or Gram matrix is not), which no check before computing can know.
    if (e.code() == basin::ErrorCode::kInvalidArgument &&
        std::string(e.what()).find("overflowed") == std::string::npos) {
      bug("analyze() refused a request validate_request accepted:", e.what());
    }
  }
}

void run_analyze_request(const basin::v1::AnalyzeRequest& req) {
  const Outcome o = decode(req);
  if (!o.ok) return;
  if (o.decoded.checkpoints.empty()) bug("decoded request without parameters");
  check_reencoding(o.decoded);
  maybe_analyze(o.decoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  TopMessage top;
  if (!top.ParseFromArray(data, static_cast<int>(size))) return 0;  // gRPC refuses these
#ifdef BASIN_FUZZ_SUBMIT
  // SubmitJob decodes the request to refuse it early; the job store keeps it serialised and
  // the worker decodes it again when the job starts. Both decodings must agree exactly.
  const Outcome at_submit = decode(top.request());
  std::string stored;
  if (!top.request().SerializeToString(&stored)) bug("a parsed request does not serialise");
  basin::v1::AnalyzeRequest loaded;
  if (!loaded.ParseFromString(stored)) bug("the stored request does not parse");
  const Outcome at_start = decode(loaded);
  if (at_submit.ok != at_start.ok || at_submit.code != at_start.code ||
      at_submit.message != at_start.message) {
    bug("submit-time and start-time decoding disagree:", at_submit.message + " / " + at_start.message);
  }
  if (at_submit.ok) {
    if (!same_request(at_submit.decoded, at_start.decoded)) bug("stored request decodes differently");
    check_reencoding(at_start.decoded);
    maybe_analyze(at_start.decoded);
  }
#else
  run_analyze_request(top);
#endif
  return 0;
}

// ---------------------------------------------------------------- the mutator

namespace {

struct Rng {
  std::mt19937_64 g;
  explicit Rng(unsigned seed) : g(seed) {}
  uint64_t below(uint64_t n) { return n == 0 ? 0 : g() % n; }
  bool one_in(uint64_t n) { return below(n) == 0; }
  template <class T, size_t K>
  T pick(const T (&a)[K]) { return a[below(K)]; }
};

const int64_t kInterestingInts[] = {0, 1, -1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 256, 4096, 65536,
                                    (int64_t(1) << 24), (int64_t(1) << 24) + 1,
                                    (int64_t(1) << 31) - 1, int64_t(1) << 31, int64_t(1) << 32,
                                    3037000499, 3037000500,  // ~sqrt(INT64_MAX)
                                    int64_t(1) << 40, int64_t(1) << 62,
                                    std::numeric_limits<int64_t>::max(),
                                    std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::min() + 1, -2, -4096};

const double kInterestingDoubles[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, 1e300,
                                      std::numeric_limits<double>::max(),
                                      -std::numeric_limits<double>::max(),
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN(), 1e-12, 1e12,
                                      3.4e38, 1e-45};

const char* const kLayerTypes[] = {"dense", "identity", "relu", "leaky_relu", "tanh", "sigmoid",
                                   "gelu", "softplus", "silu", "", "Dense", "conv", "relu ",
                                   "dense\0x"};

int64_t mutate_int(Rng& rng, int64_t v) {
  switch (rng.below(6)) {
    case 0: return rng.pick(kInterestingInts);
    case 1: return static_cast<int64_t>(static_cast<uint64_t>(v) + 1);
    case 2: return static_cast<int64_t>(static_cast<uint64_t>(v) - 1);
    case 3: return static_cast<int64_t>(static_cast<uint64_t>(v) * 2);
    case 4: return -static_cast<int64_t>(rng.below(8));
    default: return static_cast<int64_t>(rng.below(40));
  }
}

double mutate_double(Rng& rng, double v) {
  switch (rng.below(4)) {
    case 0: return rng.pick(kInterestingDoubles);
    case 1: return v * -1.0;
    case 2: return v * 1e10;
    default: return std::ldexp(static_cast<double>(rng.below(2001)) - 1000.0, -static_cast<int>(rng.below(12)));
  }
}

size_t itemsize(basin::v1::DType d) {
  return (d == basin::v1::DTYPE_FLOAT32 || d == basin::v1::DTYPE_INT32) ? 4 : 8;
}

// Bytes of one element of `dtype`: a special or an ordinary value.
std::string element(Rng& rng, basin::v1::DType dtype, bool special) {
  std::string out(itemsize(dtype), '\0');
  if (dtype == basin::v1::DTYPE_INT32 || dtype == basin::v1::DTYPE_INT64) {
    const int64_t v = special ? rng.pick(kInterestingInts) : static_cast<int64_t>(rng.below(4));
    if (dtype == basin::v1::DTYPE_INT32) {
      const int32_t w = static_cast<int32_t>(v);
      std::memcpy(&out[0], &w, 4);
    } else {
      std::memcpy(&out[0], &v, 8);
    }
    return out;
  }
  const double v = special ? rng.pick(kInterestingDoubles)
                           : (static_cast<double>(rng.below(2001)) - 1000.0) / 500.0;
  if (dtype == basin::v1::DTYPE_FLOAT32) {
    const float f = static_cast<float>(v);
    std::memcpy(&out[0], &f, 4);
  } else {
    std::memcpy(&out[0], &v, 8);
  }
  return out;
}

// Product of the shape, or -1 when it is negative, overflows or is too big to fill.
int64_t fillable_count(const basin::v1::Tensor& t) {
  int64_t count = 1;
  for (int64_t d : t.shape()) {
    if (d < 0 || (d != 0 && count > (int64_t(1) << 16) / d)) return -1;
    count *= d;
  }
  return count;
}

// Data of exactly the length the shape and dtype call for, so shape mutations get past the
// byte-count check and exercise the shape rules behind it.
void fill_tensor(Rng& rng, basin::v1::Tensor* t) {
  basin::v1::DType dtype = t->dtype();
  if (dtype < basin::v1::DTYPE_FLOAT32 || dtype > basin::v1::DTYPE_INT64) dtype = basin::v1::DTYPE_FLOAT64;
  const int64_t count = fillable_count(*t);
  if (count < 0) return;
  std::string data;
  data.reserve(static_cast<size_t>(count) * itemsize(dtype));
  for (int64_t i = 0; i < count; ++i) data += element(rng, dtype, rng.one_in(64));
  t->set_data(data);
}

void mutate_tensor(Rng& rng, basin::v1::Tensor* t) {
  switch (rng.below(9)) {
    case 0: t->add_shape(rng.one_in(2) ? static_cast<int64_t>(rng.below(5)) : rng.pick(kInterestingInts)); break;
    case 1:
      if (t->shape_size() > 0) t->mutable_shape()->RemoveLast();
      break;
    case 2:
      if (t->shape_size() > 0) {
        const int i = static_cast<int>(rng.below(t->shape_size()));
        t->set_shape(i, mutate_int(rng, t->shape(i)));
      }
      break;
    case 3: {  // shapes whose product overflows int64 but each dimension looks harmless
      t->clear_shape();
      const int64_t d = rng.one_in(2) ? 3037000500 : (int64_t(1) << 32);
      for (int i = 0; i < 2 + static_cast<int>(rng.below(2)); ++i) t->add_shape(d);
      break;
    }
    case 4: t->set_dtype(static_cast<basin::v1::DType>(rng.below(6) == 5 ? 77 : rng.below(5))); break;
    case 5: {  // byte length off by a little
      std::string* d = t->mutable_data();
      if (rng.one_in(2) && !d->empty()) d->resize(d->size() - 1 - rng.below(std::min<size_t>(d->size(), 8)));
      else d->append(1 + rng.below(8), '\0');
      break;
    }
    case 6: {  // one special value (NaN, Inf, huge, denormal, -1 label) at a random element
      basin::v1::DType dtype = t->dtype();
      if (dtype < basin::v1::DTYPE_FLOAT32 || dtype > basin::v1::DTYPE_INT64) break;
      const size_t w = itemsize(dtype);
      std::string* d = t->mutable_data();
      if (d->size() < w) break;
      const size_t i = rng.below(d->size() / w);
      const std::string e = element(rng, dtype, true);
      d->replace(i * w, w, e);
      break;
    }
    default: fill_tensor(rng, t); break;
  }
  if (rng.one_in(2)) fill_tensor(rng, t);
}

// Everything a reflection mutation can reach: a message and one of its fields.
struct Slot {
  Message* msg;
  const FieldDescriptor* field;
};

void collect(Message* m, int depth, std::vector<Slot>* out) {
  const Descriptor* d = m->GetDescriptor();
  const Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    out->push_back({m, f});
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || depth > 6) continue;
    if (f->is_repeated()) {
      for (int j = 0; j < r->FieldSize(*m, f); ++j) collect(r->MutableRepeatedMessage(m, f, j), depth + 1, out);
    } else if (r->HasField(*m, f)) {
      collect(r->MutableMessage(m, f), depth + 1, out);
    }
  }
}

std::string mutate_bytes(std::string s, size_t max_extra) {
  const size_t cap = s.size() + max_extra;
  s.resize(cap);
  const size_t n = LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(&s[0]), cap - max_extra, cap);
  s.resize(n);
  return s;
}

std::string mutate_string(Rng& rng, const FieldDescriptor* f, const std::string& v) {
  if (f->name() == "type") {
    if (rng.one_in(8)) return std::string(1024 + rng.below(60000), 'x');  // echoed into errors
    return rng.pick(kLayerTypes);
  }
  if (f->name() == "onnx_blob_id" || f->name() == "blob_id") {
    switch (rng.below(4)) {
      case 0: return "sha256:" + std::string(64, "0af"[rng.below(3)]);
      case 1: return rng.one_in(2) ? "" : "sha256:xyz";
      default: {
        // Corrupt the blob itself (ONNX model or .npy file), keeping it a valid hex id.
        std::vector<uint8_t> blob;
        if (!hex_blob(v, &blob)) break;
        std::string bytes(blob.begin(), blob.end());
        bytes = mutate_bytes(bytes, 64);
        return to_hex_blob(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      }
    }
  }
  // Kept ASCII: proto3 strings must be UTF-8, and a message that does not parse is wasted.
  std::string out = mutate_bytes(v, 64);
  for (char& c : out) c = static_cast<char>(c & 0x7f);
  return out;
}

void mutate_scalar(Rng& rng, Message* m, const FieldDescriptor* f) {
  const Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(m, f, static_cast<int32_t>(mutate_int(rng, r->GetInt32(*m, f)))); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, f, mutate_int(rng, r->GetInt64(*m, f))); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(m, f, static_cast<uint32_t>(mutate_int(rng, r->GetUInt32(*m, f)))); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(m, f, static_cast<uint64_t>(mutate_int(rng, static_cast<int64_t>(r->GetUInt64(*m, f))))); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(m, f, mutate_double(rng, r->GetDouble(*m, f))); break;
    case FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(m, f, static_cast<float>(mutate_double(rng, r->GetFloat(*m, f)))); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, !r->GetBool(*m, f)); break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      // Declared values mostly; unknown ones (proto3 enums are open) sometimes.
      const auto* e = f->enum_type();
      const int v = rng.one_in(4) ? static_cast<int>(rng.pick(kInterestingInts) % 1000) + 5
                                  : e->value(static_cast<int>(rng.below(e->value_count())))->number();
      r->SetEnumValue(m, f, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: r->SetString(m, f, mutate_string(rng, f, r->GetString(*m, f))); break;
    case FieldDescriptor::CPPTYPE_MESSAGE: r->MutableMessage(m, f); break;  // set it (empty) if unset
  }
}

void mutate_repeated(Rng& rng, Message* m, const FieldDescriptor* f, size_t max_size) {
  const Reflection* r = m->GetReflection();
  const int n = r->FieldSize(*m, f);
  const bool is_msg = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
  switch (rng.below(5)) {
    case 0:  // drop one
      if (n > 0) {
        r->SwapElements(m, f, static_cast<int>(rng.below(n)), n - 1);
        r->RemoveLast(m, f);
      }
      return;
    case 1:  // swap two
      if (n > 1) r->SwapElements(m, f, static_cast<int>(rng.below(n)), static_cast<int>(rng.below(n)));
      return;
    case 2: {  // duplicate one, a few times or very many (huge layer counts must fail fast)
      if (n == 0 || !is_msg) break;
      const Message& src = r->GetRepeatedMessage(*m, f, static_cast<int>(rng.below(n)));
      const size_t each = src.ByteSizeLong() + 3;
      size_t copies = rng.one_in(4) ? max_size / each : 1 + rng.below(4);
      copies = std::min(copies, max_size / each);
      for (size_t i = 0; i < copies; ++i) r->AddMessage(m, f)->CopyFrom(r->GetRepeatedMessage(*m, f, static_cast<int>(rng.below(n))));
      return;
    }
    case 3:  // mutate one element
      if (n == 0) break;
      if (is_msg) return;  // its fields are slots of their own
      {
        const int i = static_cast<int>(rng.below(n));
        switch (f->cpp_type()) {
          case FieldDescriptor::CPPTYPE_INT64: r->SetRepeatedInt64(m, f, i, mutate_int(rng, r->GetRepeatedInt64(*m, f, i))); break;
          case FieldDescriptor::CPPTYPE_DOUBLE: r->SetRepeatedDouble(m, f, i, mutate_double(rng, r->GetRepeatedDouble(*m, f, i))); break;
          case FieldDescriptor::CPPTYPE_INT32: r->SetRepeatedInt32(m, f, i, static_cast<int32_t>(mutate_int(rng, r->GetRepeatedInt32(*m, f, i)))); break;
          case FieldDescriptor::CPPTYPE_ENUM: r->SetRepeatedEnumValue(m, f, i, static_cast<int>(mutate_int(rng, 3))); break;
          default: break;
        }
      }
      return;
    default: break;
  }
  // Add one new element.
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* added = r->AddMessage(m, f);
      if (auto* layer = dynamic_cast<basin::v1::Layer*>(added)) {
        layer->set_type(rng.pick(kLayerTypes));
        if (layer->type() == "dense") layer->set_out(1 + static_cast<int64_t>(rng.below(6)));
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: r->AddInt64(m, f, mutate_int(rng, 1)); break;
    case FieldDescriptor::CPPTYPE_DOUBLE: r->AddDouble(m, f, mutate_double(rng, 1)); break;
    case FieldDescriptor::CPPTYPE_INT32: r->AddInt32(m, f, static_cast<int32_t>(mutate_int(rng, 1))); break;
    case FieldDescriptor::CPPTYPE_ENUM: r->AddEnumValue(m, f, static_cast<int>(rng.below(6))); break;
    default: break;
  }
}

basin::v1::AnalyzeRequest* analyze_part(TopMessage* top) {
#ifdef BASIN_FUZZ_SUBMIT
  return top->mutable_request();
#else
  return top;
#endif
}

int64_t model_params(const basin::v1::Model& m, int64_t* in_dim, int64_t* out_dim) {
  try {
    const basin::Model model = basin::wire::model_from_proto(m);
    *in_dim = model.input_dim;
    *out_dim = model.output_dim();
    return model.num_params();
  } catch (const basin::Error&) {
    return -1;
  }
}

// Rebuilds params / inputs / targets to match the model and loss, so that a mutation of the
// model (a width, a layer) reaches validation and analyze() instead of a shape mismatch.
void make_consistent(Rng& rng, basin::v1::AnalyzeRequest* req) {
  if (!req->has_model()) return;
  int64_t in_dim = 0, k = 0;
  const int64_t N = model_params(req->model(), &in_dim, &k);
  if (N < 0 || N > 4096 || in_dim > 256 || k > 64) return;
  const int64_t n = 1 + static_cast<int64_t>(rng.below(6));
  const auto f = rng.one_in(3) ? basin::v1::DTYPE_FLOAT32 : basin::v1::DTYPE_FLOAT64;
  basin::v1::Tensor* p = req->mutable_params()->mutable_tensor();
  p->Clear();
  p->set_dtype(f);
  if (rng.one_in(4)) p->add_shape(1 + static_cast<int64_t>(rng.below(3)));
  p->add_shape(N);
  fill_tensor(rng, p);
  basin::v1::Tensor* x = req->mutable_inputs()->mutable_tensor();
  x->Clear();
  x->set_dtype(f);
  x->add_shape(n);
  x->add_shape(in_dim);
  fill_tensor(rng, x);
  if (req->loss() == basin::v1::LOSS_MSE) {
    basin::v1::Tensor* y = req->mutable_targets()->mutable_tensor();
    y->Clear();
    y->set_dtype(f);
    y->add_shape(n);
    y->add_shape(k);
    fill_tensor(rng, y);
  } else if (req->loss() == basin::v1::LOSS_CROSS_ENTROPY) {
    basin::v1::Tensor* y = req->mutable_targets()->mutable_tensor();
    y->Clear();
    y->set_dtype(basin::v1::DTYPE_INT64);
    y->add_shape(n);
    std::string labels;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t l = static_cast<int64_t>(rng.below(static_cast<uint64_t>(k)));
      labels.append(reinterpret_cast<const char*>(&l), 8);
    }
    y->set_data(labels);
  } else {
    req->clear_targets();
  }
}

void mutate_once(Rng& rng, TopMessage* top, size_t max_size) {
  basin::v1::AnalyzeRequest* req = analyze_part(top);
  if (rng.one_in(6)) {
    make_consistent(rng, req);
    return;
  }
  std::vector<Slot> slots;
  collect(top, 0, &slots);
  const Slot s = slots[rng.below(slots.size())];
  const Reflection* r = s.msg->GetReflection();
  if (auto* t = dynamic_cast<basin::v1::Tensor*>(s.msg); t && rng.one_in(2)) {
    mutate_tensor(rng, t);
    return;
  }
  if (s.field->is_repeated()) {
    mutate_repeated(rng, s.msg, s.field, max_size);
  } else if (s.field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && r->HasField(*s.msg, s.field) &&
             rng.one_in(3)) {
    r->ClearField(s.msg, s.field);
  } else if (s.field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
             s.field->message_type() == basin::v1::TensorSource::descriptor() && rng.one_in(2)) {
    // Move a tensor to another slot (inputs where targets belong ...) or into a "hex:" blob.
    basin::v1::TensorSource* dst = static_cast<basin::v1::TensorSource*>(r->MutableMessage(s.msg, s.field));
    const basin::v1::TensorSource* from[] = {&req->params(), &req->inputs(), &req->targets()};
    const basin::v1::TensorSource& src = *from[rng.below(3)];
    if (&src == dst) return;
    if (rng.one_in(2) || !src.has_tensor()) {
      dst->CopyFrom(src);
    } else {
      // The same tensor as a .npy blob: parse_npy's header parser gets fuzzed too.
      basin::NpyArray a;
      try {
        a = basin::wire::tensor_to_npy(src.tensor(), "t");
      } catch (const basin::Error&) {
        return;
      }
      const std::vector<uint8_t> npy = basin::serialize_npy(a);
      dst->set_blob_id(to_hex_blob(npy.data(), npy.size()));
    }
  } else {
    mutate_scalar(rng, s.msg, s.field);
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  Rng rng(seed);
  TopMessage top;
  // Some plain byte mutation always, so that the wire parser and odd encodings get fuzzed.
  if (rng.one_in(10) || !top.ParseFromArray(data, static_cast<int>(size))) {
    return LLVMFuzzerMutate(data, size, max_size);
  }
  const int rounds = 1 + static_cast<int>(rng.below(3));
  for (int i = 0; i < rounds; ++i) mutate_once(rng, &top, max_size);
  const size_t out = top.ByteSizeLong();
  if (out > max_size) return LLVMFuzzerMutate(data, size, max_size);
  top.SerializeToArray(data, static_cast<int>(out));
  return out;
}
