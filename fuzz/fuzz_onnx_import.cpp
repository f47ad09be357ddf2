// libFuzzer target over the ONNX importer: any byte string must either import or throw
// basin::Error — never crash, hang, leak past ASan, or throw anything else.
// Built and run by fuzz/run_fuzz.sh (clang++ -fsanitize=fuzzer,address).
#include <cstddef>
#include <cstdint>
#include <string>

#include "basin/error.hpp"
#include "basin/onnx_import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const basin::ImportedModel m = basin::import_onnx(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    // What comes back must be self-consistent: the engine sizes buffers from these numbers.
    if (static_cast<int64_t>(m.params.size()) != m.graph.num_params()) __builtin_trap();
    if (m.graph.input() < 0 || m.graph.output() < 0 || !m.graph.value(m.graph.output()).batched) __builtin_trap();
  } catch (const basin::Error&) {
    // expected for almost every input
  }
  return 0;
}
