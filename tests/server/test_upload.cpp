// Content-addressed, client-streamed blobs: large uploads, dedup, integrity, disconnects.
#include <dirent.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include <thread>

#include "basin/wire/proto_convert.hpp"
#include "basind_fixture.hpp"
#include "sha256.hpp"

namespace basin::test {
namespace {

constexpr size_t kChunk = 4 << 20;

grpc::Status upload(v1::Basin::Stub* stub, const std::string& content, v1::UploadBlobResponse* out,
                    const std::string& expected_id = "", size_t chunk = kChunk) {
  auto ctx = context("", 120);
  auto writer = stub->UploadBlob(ctx.get(), out);
  size_t off = 0;
  bool first = true;
  do {
    v1::UploadBlobRequest msg;
    if (first && !expected_id.empty()) msg.set_expected_id(expected_id);
    first = false;
    const size_t n = std::min(chunk, content.size() - off);
    msg.set_chunk(content.data() + off, n);
    off += n;
    if (!writer->Write(msg)) break;
  } while (off < content.size());
  writer->WritesDone();
  return writer->Finish();
}

size_t count_files(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

TEST(Upload, HundredMegabytesStreamedThenDeduplicated) {
  TempDir data;
  Basind server({"--data-dir", data.path()});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  // 104 MB of non-repeating content (a cheap LCG), so nothing on the way can compress it away.
  std::string content(104u << 20, '\0');
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i + 8 <= content.size(); i += 8) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    std::memcpy(&content[i], &x, 8);
  }
  const std::string hex = server::sha256_hex(content);
  v1::UploadBlobResponse first;
  grpc::Status st = upload(stub.get(), content, &first);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(first.blob_id(), "sha256:" + hex);
  EXPECT_EQ(first.size(), static_cast<int64_t>(content.size()));
  EXPECT_FALSE(first.deduplicated());

  v1::UploadBlobResponse second;
  st = upload(stub.get(), content, &second, "sha256:" + hex);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(second.blob_id(), first.blob_id());
  EXPECT_TRUE(second.deduplicated());
  EXPECT_EQ(count_files(data.path() + "/blobs"), 1u);
  EXPECT_EQ(count_files(data.path() + "/tmp"), 0u);
}

TEST(Upload, NpyBlobsDriveAnAnalysis) {
  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  const AnalysisRequest p = make_problem(9, 3, 5, 2, Loss::kMse, 31);
  v1::UploadBlobResponse x, y, w;
  ASSERT_TRUE(upload(stub.get(), npy_f64({9, 3}, p.inputs), &x).ok());
  ASSERT_TRUE(upload(stub.get(), npy_f64({9, 2}, p.targets), &y).ok());
  ASSERT_TRUE(upload(stub.get(), npy_f64({p.model.num_params()}, p.params), &w).ok());
  v1::AnalyzeRequest req = to_proto(p);
  req.mutable_inputs()->set_blob_id(x.blob_id());
  req.mutable_targets()->set_blob_id(y.blob_id());
  req.mutable_params()->set_blob_id(w.blob_id());
  v1::AnalyzeResponse resp;
  auto ctx = context();
  grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  expect_same_result(analyze(p), wire::result_from_proto(resp.results(0)));

  // A blob that is not a .npy file is refused naming the field.
  v1::UploadBlobResponse junk;
  ASSERT_TRUE(upload(stub.get(), "not an npy file", &junk).ok());
  req.mutable_inputs()->set_blob_id(junk.blob_id());
  auto ctx2 = context();
  st = stub->Analyze(ctx2.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("inputs.blob_id"), std::string::npos) << st.error_message();
}

TEST(Upload, BadChunksHashesAndQuota) {
  TempDir data;
  Basind server({"--data-dir", data.path(), "--max-stored-bytes", "10000000"});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::UploadBlobResponse resp;
  // Wrong expected hash.
  grpc::Status st = upload(stub.get(), "hello", &resp, "sha256:" + std::string(64, '0'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("expected_id"), std::string::npos);
  // A chunk over 4 MiB.
  st = upload(stub.get(), std::string(kChunk + 1, 'x'), &resp, "", kChunk + 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("chunk"), std::string::npos);
  // Over the per-user stored-bytes quota.
  st = upload(stub.get(), std::string(11000000, 'y'), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("max_stored_bytes_per_user"), std::string::npos);
  // None of the failures left anything behind.
  EXPECT_EQ(count_files(data.path() + "/blobs"), 0u);
  EXPECT_EQ(count_files(data.path() + "/tmp"), 0u);
  // Content that fits still works.
  st = upload(stub.get(), "hello", &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.blob_id(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
}

TEST(Upload, ClientDisconnectMidUploadLeavesNoBlob) {
  TempDir data;
  Basind server({"--data-dir", data.path()});
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  {
    v1::UploadBlobResponse resp;
    auto ctx = context("", 60);
    auto writer = stub->UploadBlob(ctx.get(), &resp);
    v1::UploadBlobRequest msg;
    msg.set_chunk(std::string(kChunk, 'z'));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(writer->Write(msg));
    // Give the server time to take the chunks, then vanish without WritesDone.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ctx->TryCancel();
    EXPECT_FALSE(writer->Finish().ok());
  }
  // The server notices asynchronously; the temp file must go and no blob may appear.
  for (int i = 0; i < 100 && count_files(data.path() + "/tmp") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(count_files(data.path() + "/tmp"), 0u);
  EXPECT_EQ(count_files(data.path() + "/blobs"), 0u);
}

}  // namespace
}  // namespace basin::test

namespace basin::test {
namespace {

std::string list_literal(const std::vector<double>& v, size_t from, size_t count) {
  std::ostringstream os;
  os.precision(17);
  os << "[";
  for (size_t i = 0; i < count; ++i) os << (i ? "," : "") << v[from + i];
  os << "]";
  return os.str();
}

TEST(Upload, OnnxBlobIsAModelWithItsOwnParameters) {
  if (std::system("/usr/bin/python3 -c 'import onnx' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 onnx is not installed: cannot write a test ONNX file";
  }
  const AnalysisRequest p = make_problem(7, 3, 4, 2, Loss::kMse, 71);
  // Gemm(transB=1) -> Tanh -> Gemm: the PyTorch export of Linear/Tanh/Linear, with the
  // parameters of `p` (weight [out, in] row-major, then bias) as initialisers.
  TempDir dir;
  const std::string path = dir.path() + "/m.onnx";
  std::ostringstream py;
  py << "import onnx\nfrom onnx import helper, TensorProto as T\n"
     << "w1=" << list_literal(p.params, 0, 12) << "\nb1=" << list_literal(p.params, 12, 4)
     << "\nw2=" << list_literal(p.params, 16, 8) << "\nb2=" << list_literal(p.params, 24, 2)
     << "\ninit=[helper.make_tensor('w1',T.DOUBLE,[4,3],w1),helper.make_tensor('b1',T.DOUBLE,[4],b1),"
        "helper.make_tensor('w2',T.DOUBLE,[2,4],w2),helper.make_tensor('b2',T.DOUBLE,[2],b2)]\n"
     << "nodes=[helper.make_node('Gemm',['x','w1','b1'],['h'],transB=1),"
        "helper.make_node('Tanh',['h'],['a']),"
        "helper.make_node('Gemm',['a','w2','b2'],['y'],transB=1)]\n"
     << "g=helper.make_graph(nodes,'g',[helper.make_tensor_value_info('x',T.DOUBLE,['n',3])],"
        "[helper.make_tensor_value_info('y',T.DOUBLE,['n',2])],init)\n"
     << "onnx.save(helper.make_model(g,opset_imports=[helper.make_opsetid('',13)]),'" << path
     << "')\n";
  {
    std::ofstream(dir.path() + "/make.py") << py.str();
  }
  ASSERT_EQ(std::system(("/usr/bin/python3 " + dir.path() + "/make.py").c_str()), 0);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  Basind server;
  ASSERT_TRUE(server.started());
  auto stub = server.stub();
  v1::UploadBlobResponse blob;
  ASSERT_TRUE(upload(stub.get(), bytes, &blob).ok());
  v1::AnalyzeRequest req = to_proto(p);
  req.set_onnx_blob_id(blob.blob_id());  // replaces the layer list
  req.clear_params();                    // the ONNX initialisers are the parameters
  v1::AnalyzeResponse resp;
  auto ctx = context();
  grpc::Status st = stub->Analyze(ctx.get(), req, &resp);
  if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    GTEST_SKIP() << "basind was built without the ONNX importer: " << st.error_message();
  }
  ASSERT_TRUE(st.ok()) << st.error_message();
  expect_same_result(analyze(p), wire::result_from_proto(resp.results(0)));
}

}  // namespace
}  // namespace basin::test
