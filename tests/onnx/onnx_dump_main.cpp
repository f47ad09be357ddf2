// basin_onnx_dump FILE.onnx [--params a,b,...] [--constants a,b,...] [--input-shape 3,32,32]
// imports FILE and prints what Basin made of it as one JSON object:
//   {"graph": {"input": {...}, "output": "...", "parameters": [{"name", "shape", "offset"}],
//              "nodes": [{"name", "op", "inputs": [value names], "shape", "attrs"}]},
//    "num_params": N, "params": [...], "opset": n, "chain": <model_to_json> or null}   exit 0
//   {"error": {"code": "INVALID_ARGUMENT", "message": "..."}}                          exit 1
// Test helper for tests/onnx/test_onnx_import.py.
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "basin/error.hpp"
#include "basin/model.hpp"
#include "basin/onnx_import.hpp"

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t c = std::min(s.find(',', start), s.size());
    if (c > start) out.push_back(s.substr(start, c - start));
    start = c + 1;
  }
  return out;
}

nlohmann::json graph_json(const basin::Graph& g) {
  nlohmann::json j;
  const auto& in = g.value(g.input());
  j["input"] = {{"name", in.name}, {"shape", in.shape}};
  j["output"] = g.value(g.output()).name;
  j["output_shape"] = g.value(g.output()).shape;
  j["parameters"] = nlohmann::json::array();
  for (int id : g.parameters()) {
    const auto& v = g.value(id);
    j["parameters"].push_back({{"name", v.name}, {"shape", v.shape}, {"offset", v.param_offset}});
  }
  j["nodes"] = nlohmann::json::array();
  for (const auto& n : g.nodes()) {
    nlohmann::json nj = {{"name", n.name}, {"op", n.op}, {"shape", g.value(n.output).shape}};
    nj["inputs"] = nlohmann::json::array();
    for (int id : n.inputs) nj["inputs"].push_back(g.value(id).name);
    nlohmann::json attrs = nlohmann::json::object();
    for (const auto& [k, a] : n.attrs) {
      if (!a.str.empty()) attrs[k] = a.str;
      else if (!a.floats.empty()) attrs[k] = a.floats;
      else attrs[k] = a.ints;
    }
    nj["attrs"] = attrs;
    j["nodes"].push_back(nj);
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: basin_onnx_dump FILE.onnx [--params a,b] [--constants a,b] [--input-shape d1,d2]\n";
    return 2;
  }
  basin::ImportBounds bounds;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--params") bounds.parameter_names = split(value);
    else if (flag == "--constants") bounds.constant_names = split(value);
    else if (flag == "--input-shape") for (const std::string& d : split(value)) bounds.input_shape.push_back(std::stoll(d));
  }
  nlohmann::json out;
  try {
    const basin::ImportedModel m = basin::import_onnx_file(argv[1], bounds);
    out["graph"] = graph_json(m.graph);
    out["num_params"] = m.graph.num_params();
    out["params"] = m.params;  // nlohmann prints doubles with round-trip precision
    out["opset"] = m.opset;
    out["chain"] = m.model.layers.empty() ? nlohmann::json() : nlohmann::json::parse(basin::model_to_json(m.model));
  } catch (const basin::Error& e) {
    out["error"] = {{"code", basin::error_code_name(e.code())}, {"message", e.what()}};
    std::cout << out.dump() << "\n";
    return 1;
  }
  std::cout << out.dump() << "\n";
  return 0;
}
