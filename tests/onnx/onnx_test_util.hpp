// Helpers shared by the importer tests: the graph's ops, a node by name, the expected error.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "basin/error.hpp"
#include "basin/graph.hpp"
#include "basin/onnx_import.hpp"
#include "ops/op.hpp"

namespace basin {

inline std::vector<std::string> ops_of(const Graph& g) {
  std::vector<std::string> ops;
  for (const GraphNode& n : g.nodes()) ops.push_back(n.op);
  return ops;
}

inline const GraphNode* node_named(const Graph& g, const std::string& name) {
  for (const GraphNode& n : g.nodes())
    if (n.name == name) return &n;
  return nullptr;
}

inline int count_op(const Graph& g, const std::string& op) {
  int c = 0;
  for (const GraphNode& n : g.nodes()) c += n.op == op;
  return c;
}

// Runs the import and returns the error (fails the test when it succeeds).
inline Error import_error(const std::string& bytes, const ImportBounds& bounds = {}) {
  try {
    import_onnx(bytes, "test.onnx", bounds);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "import succeeded, expected an error";
  return Error(ErrorCode::kInternal, "");
}

// Whether every primitive op is registered on this build (the op families land one by one).
inline std::string missing_ops(std::initializer_list<const char*> ops) {
  std::string missing;
  for (const char* op : ops)
    if (find_op(op) == nullptr) missing += std::string(missing.empty() ? "" : ", ") + op;
  return missing;
}

}  // namespace basin

#define REQUIRE_OPS(...)                                                          \
  do {                                                                            \
    const std::string missing_ = ::basin::missing_ops({__VA_ARGS__});             \
    if (!missing_.empty()) GTEST_SKIP() << "primitive ops not registered yet: " << missing_; \
  } while (0)

#define EXPECT_IMPORT_ERROR_B(bytes, bounds, want_code, ...)                                                   \
  do {                                                                                                         \
    const ::basin::Error e_ = ::basin::import_error(bytes, bounds);                                            \
    EXPECT_EQ(e_.code(), want_code) << e_.what();                                                              \
    for (const char* part : {__VA_ARGS__})                                                                     \
      EXPECT_NE(std::string(e_.what()).find(part), std::string::npos) << "message lacks '" << part << "': " << e_.what(); \
  } while (0)

#define EXPECT_IMPORT_ERROR(bytes, want_code, ...) EXPECT_IMPORT_ERROR_B(bytes, ::basin::ImportBounds{}, want_code, __VA_ARGS__)
