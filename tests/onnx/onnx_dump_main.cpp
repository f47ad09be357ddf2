// basin_onnx_dump FILE.onnx — imports FILE and prints what Basin made of it as one JSON object:
//   {"model": <model_to_json>, "params": [...], "opset": n}          exit 0
//   {"error": {"code": "INVALID_ARGUMENT", "message": "..."}}        exit 1
// Test helper for tests/onnx/test_onnx_import.py.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "basin/error.hpp"
#include "basin/onnx_import.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: basin_onnx_dump FILE.onnx\n";
    return 2;
  }
  nlohmann::json out;
  try {
    const basin::ImportedModel m = basin::import_onnx_file(argv[1]);
    out["model"] = nlohmann::json::parse(basin::model_to_json(m.model));
    out["params"] = m.params;  // nlohmann prints doubles with round-trip precision
    out["opset"] = m.opset;
  } catch (const basin::Error& e) {
    out["error"] = {{"code", basin::error_code_name(e.code())}, {"message", e.what()}};
    std::cout << out.dump() << "\n";
    return 1;
  }
  std::cout << out.dump() << "\n";
  return 0;
}
