// The importer's bounds (issue 15): a node limit checked from the count alone, and the caller's
// stop test, called during the linear passes, that ends an import whose caller has gone.
#include <gtest/gtest.h>

#include <string>

#include "basin/error.hpp"
#include "basin/onnx_import.hpp"
#include "onnx_builder.hpp"

namespace basin {
namespace {

using onnx_test::kBatch;
using onnx_test::ModelBuilder;

void gemm(ModelBuilder& m, const std::string& x, const std::string& y, int64_t in, int64_t out, const std::string& name) {
  m.init(name + ".weight", {out, in}, std::vector<double>(static_cast<size_t>(out * in), 0.25));
  onnx_test::set_int(m.node("Gemm", {x, name + ".weight"}, {y}, name), "transB", 1);
}

// x [batch, 3] -> Gemm(4) -> `relus` Relu nodes -> Gemm(2) -> y.
std::string deep_chain(int relus) {
  ModelBuilder m(17);
  m.input("x", {kBatch, 3});
  gemm(m, "x", "h0", 3, 4, "fc1");
  for (int i = 0; i < relus; ++i)
    m.node("Relu", {"h" + std::to_string(i)}, {"h" + std::to_string(i + 1)}, "r" + std::to_string(i));
  gemm(m, "h" + std::to_string(relus), "y", 4, 2, "fc2");
  m.output("y", {kBatch, 2});
  return m.bytes();
}

TEST(OnnxBounds, NodeLimitIsResourceExhaustedFromTheCount) {
  ImportBounds small;
  small.max_nodes = 100;
  try {
    import_onnx(deep_chain(10000), "deep.onnx", small);
    ADD_FAILURE() << "10002 nodes passed a limit of 100";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
    EXPECT_NE(std::string(e.what()).find("10002 nodes, over the limit of 100 nodes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ImportBounds().max_nodes, 40000);
}

TEST(OnnxBounds, StopTestIsCalledAndEndsTheImport) {
  const std::string bytes = deep_chain(10000);
  ImportBounds counting;
  int calls = 0;
  counting.check_stop = [&] { ++calls; };
  const ImportedModel r = import_onnx(bytes, "deep.onnx", counting);
  EXPECT_EQ(r.graph.nodes().size(), 10002u);
  EXPECT_GE(calls, 3);  // once after parsing, every 4096 nodes of each pass
  ImportBounds stopping;
  int seen = 0;
  stopping.check_stop = [&] {
    if (++seen == 2) throw Error(ErrorCode::kCancelled, "the client cancelled the call");
  };
  try {
    import_onnx(bytes, "deep.onnx", stopping);
    ADD_FAILURE() << "the import ignored its stop test";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled) << e.what();
  }
}

}  // namespace
}  // namespace basin
