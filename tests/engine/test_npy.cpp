// .npy reading: round trips for every supported dtype and header version, and a clear error
// (never a crash) for everything else, including every truncation of a valid file.
#include <gtest/gtest.h>

#include <cstring>

#include "basin/error.hpp"
#include "basin/npy.hpp"

namespace basin {
namespace {

std::vector<uint8_t> file_with_header(const std::string& dict, int version, size_t data_bytes) {
  std::string header = dict;
  const size_t prefix = version == 1 ? 10 : 12;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(version), 0};
  const size_t len = header.size();
  out.push_back(len & 0xff);
  out.push_back((len >> 8) & 0xff);
  if (version != 1) {
    out.push_back((len >> 16) & 0xff);
    out.push_back((len >> 24) & 0xff);
  }
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse_npy(bytes, "--inputs");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "";
}

TEST(Npy, RoundTripsFloat64) {
  const NpyArray a = make_npy_f64({2, 3}, {1, 2, 3, 4, 5, 6.5});
  const NpyArray b = parse_npy(serialize_npy(a), "x");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b.to_double(), a.to_double());
}

TEST(Npy, ReadsAllDtypesAndVersions) {
  for (int version : {1, 2, 3}) {
    auto f = file_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", version, 8);
    const float v[2] = {1.5f, -2.0f};
    std::memcpy(f.data() + f.size() - 8, v, 8);
    const NpyArray a = parse_npy(f, "x");
    EXPECT_EQ(a.to_double(), (std::vector<double>{1.5, -2.0}));
  }
  auto i4 = file_with_header("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 1, 12);
  const int32_t iv[3] = {0, 7, -3};
  std::memcpy(i4.data() + i4.size() - 12, iv, 12);
  EXPECT_EQ(parse_npy(i4, "y").to_int64(), (std::vector<int64_t>{0, 7, -3}));
  auto i8 = file_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }", 1, 8);
  EXPECT_EQ(parse_npy(i8, "y").shape, (std::vector<int64_t>{1, 1}));
}

TEST(Npy, RejectsWithAClearMessage) {
  EXPECT_NE(error_of({'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'}).find("not a .npy"), std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", 1, 16)).find("'>f8'"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }", 1, 32)).find("float32"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", 1, 2)).find("not supported"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", 1, 32)).find("Fortran"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", 1, 16)).find("truncated"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-4,), }", 1, 16)).find("shape"),
            std::string::npos);
  EXPECT_NE(error_of(file_with_header("{'fortran_order': False, 'shape': (4,), }", 1, 32)).find("descr"), std::string::npos);
  // Shapes whose element count overflows are refused, not allocated.
  EXPECT_NE(error_of(file_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (999999999999999, 999999999999999), }", 1, 8))
                .size(),
            0u);
  auto v9 = file_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 1, 8);
  v9[6] = 9;
  EXPECT_NE(error_of(v9).find("version"), std::string::npos);
}

TEST(Npy, EveryTruncationIsAnErrorNotACrash) {
  const std::vector<uint8_t> full = serialize_npy(make_npy_f64({3, 2}, {1, 2, 3, 4, 5, 6}));
  for (size_t len = 0; len < full.size(); ++len) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + len);
    EXPECT_FALSE(error_of(cut).empty()) << "length " << len;
  }
}

}  // namespace
}  // namespace basin
