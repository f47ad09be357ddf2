// basin.v1 messages <-> engine structs (basin::AnalysisRequest / AnalysisResult).
//
// Shared by basind (decode requests, encode results) and the basin CLI (the reverse), so that
// `basin analyze --server` prints byte-for-byte the JSON that `--local` prints.
//
// Decoding checks everything the wire format itself can get wrong -- unknown enum values,
// tensor byte counts that do not match dtype × shape, NaN/Inf, unknown layer names, shapes
// that disagree with the model -- and throws basin::Error(kInvalidArgument) with a message
// that names the field ("inputs.shape: expected [n, 4] ..."). What is left (the engine's own
// rules and limits) is basin::validate_request's job.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/npy.hpp"
#include "basin/v1/basin.pb.h"

namespace basin::wire {

// Returns the bytes of the blob `blob_id` as seen by the caller, or throws Error naming
// `field`: kInvalidArgument for a malformed id, kNotFound for one the caller has not uploaded.
using BlobReader =
    std::function<std::vector<uint8_t>(const std::string& blob_id, const std::string& field)>;

// A decoded request: `base` has everything except `params`; one analysis runs per checkpoint
// (params of shape [N] give one, [B, N] give B).
struct DecodedRequest {
  AnalysisRequest base;
  std::vector<std::vector<double>> checkpoints;
};

// Throws basin::Error (kCancelled / kDeadlineExceeded) when the caller has gone; decoding calls
// it between its steps and every few thousand layers, so it stops soon after a client does.
using StopCheck = std::function<void()>;

// `default_device` stands in for DEVICE_UNSPECIFIED; `limits` are the server's. Linear in the
// size of the request; a model of more than limits.max_layers layers (ONNX: 4x as many nodes)
// is refused (kResourceExhausted) from its count alone.
DecodedRequest decode_request(const v1::AnalyzeRequest& request, const BlobReader& read_blob,
                              Device default_device, const Limits& limits,
                              const StopCheck& check_stop = {});

// Model spec <-> proto.
Model model_from_proto(const v1::Model& model, const std::string& field = "model",
                       const StopCheck& check_stop = {});
void model_to_proto(const Model& model, v1::Model* out);

// Tensors: NpyArray is exactly {dtype, shape, raw little-endian bytes}.
NpyArray tensor_to_npy(const v1::Tensor& tensor, const std::string& field);
void npy_to_tensor(const NpyArray& array, v1::Tensor* out);
void doubles_to_tensor(const std::vector<double>& values, std::vector<int64_t> shape,
                       v1::Tensor* out);

// Engine request -> proto, tensors inline (the CLI's `--server` path). With two or more
// `checkpoints`, params is the [B, N] tensor of them (request.params is then not used).
void request_to_proto(const AnalysisRequest& request, v1::AnalyzeRequest* out,
                      const std::vector<std::vector<double>>& checkpoints = {});

void result_to_proto(const AnalysisResult& result, v1::AnalysisResult* out);
AnalysisResult result_from_proto(const v1::AnalysisResult& result);

}  // namespace basin::wire
