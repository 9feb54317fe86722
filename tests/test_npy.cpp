// .npy: round trips, files laid out byte for byte as numpy writes them (v1 and v2), and every
// rejection naming the file and what was found.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/error.hpp"
#include "host/io/npy.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

using test::expect_user_error;

class Npy : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ / name; }
  test::TempDir dir_;
};

using test::slurp;
using test::spit;

// What numpy's np.save / np.lib.format.write_array(f, a, version=(major, 0)) produce: magic, version,
// little-endian header length (u16 for v1, u32 for v2), the dict padded with spaces to a 64-byte
// preamble and ended by '\n', then the data.
std::string npy_file(int major, const std::string& dict, const std::string& data) {
  const size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  header.append((64 - (8 + len_bytes + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  for (size_t k = 0; k < len_bytes; ++k) out += static_cast<char>(header.size() >> (8 * k) & 0xff);
  return out + header + data;
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}


}  // namespace

TEST_F(Npy, RoundTripAndLayout) {
  Tensor t({3, 1, 4, 5});
  for (int64_t i = 0; i < t.numel(); ++i) t.data[i] = -1.f + 2.f * static_cast<float>(i) / static_cast<float>(t.numel());
  const std::string p = path("x.npy");
  write_npy(p, t);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  // Byte for byte what numpy 1.24's np.save writes for this array.
  const std::string expect = npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 1, 4, 5), }", raw_bytes(t.data));
  const std::string bytes = slurp(p);
  EXPECT_EQ(bytes, expect);
  EXPECT_EQ((bytes.size() - t.data.size() * 4) % 64, 0u);

  const NpyArray a = read_npy(p);
  EXPECT_EQ(a.dtype, "<f4");
  EXPECT_EQ(a.shape, t.shape);
  EXPECT_EQ(a.f32, t.data);
  const Tensor img = npy_images_f32(p);
  EXPECT_EQ(img.shape, t.shape);
  EXPECT_EQ(img.data, t.data);
}

TEST_F(Npy, HeaderDictFormatting) {
  EXPECT_EQ(npy_header_dict("<f4", {5}), "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }");
  EXPECT_EQ(npy_header_dict("<f4", {}), "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
  Tensor energies({7}, 0.25f);
  const std::string p = path("e.npy");
  write_npy(p, energies);
  EXPECT_EQ(read_npy(p).shape, std::vector<int64_t>{7});
  EXPECT_EQ(read_npy(p).f32, energies.data);
}

TEST_F(Npy, ReadsNumpyV1AndV2) {
  // v1 float32 [N,H,W] becomes [N,1,H,W].
  const std::vector<float> f{0.f, 0.5f, -1.f, 1.f, 0.25f, -0.25f, 0.75f, -0.75f};
  const std::string p1 = path("v1.npy");
  spit(p1, npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", raw_bytes(f)));
  const Tensor t = npy_images_f32(p1);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 1, 2, 2}));
  EXPECT_EQ(t.data, f);

  // v2 uint8 (as np.lib.format.write_array(f, a, version=(2, 0)) writes it): raw bytes from read_npy,
  // the data pipeline's (u - 127.5) / 127.5 from npy_images_f32.
  const std::vector<uint8_t> u{0, 255, 127, 128, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140};
  const std::string p2 = path("v2.npy");
  spit(p2, npy_file(2, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 3), }", raw_bytes(u)));
  const NpyArray a = read_npy(p2);
  EXPECT_EQ(a.dtype, "|u1");
  EXPECT_EQ(a.u8, u);
  EXPECT_TRUE(a.f32.empty());
  const Tensor img = npy_images_f32(p2);
  EXPECT_EQ(img.shape, (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_FLOAT_EQ(img.data[0], -1.f);
  EXPECT_FLOAT_EQ(img.data[1], 1.f);
  EXPECT_FLOAT_EQ(img.data[2], -0.5f / 127.5f);

  // Keys in another order, double quotes and Python 2 longs are still numpy files.
  const std::string p3 = path("odd.npy");
  spit(p3, npy_file(1, "{\"shape\": (1L, 1, 2, 1), 'fortran_order': False, 'descr': '<f4'}", raw_bytes(std::vector<float>{3.f, 4.f})));
  EXPECT_EQ(npy_images_f32(p3).shape, (std::vector<int64_t>{1, 1, 2, 1}));
}

TEST_F(Npy, RejectsWhatItCannotRead) {
  const std::string d8(64, '\0');
  struct Case {
    std::string name, bytes, problem;
  } cases[] = {
      {"f8.npy", npy_file(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 4), }", d8), "unsupported dtype '<f8'"},
      {"bigendian.npy", npy_file(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 4), }", d8), "unsupported dtype '>f4'"},
      {"fortran.npy", npy_file(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 4), }", d8), "fortran_order is True"},
      {"truncated.npy", npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 4), }", d8),
       "truncated data: shape (5, 4) <f4 needs 80 bytes, file holds 64"},
      {"magic.npy", "PK\x03\x04 this is a zip", "bad magic"},
      {"version.npy", std::string("\x93NUMPY\x04\x00\x10\x00", 10) + std::string(16, ' '), "unsupported .npy format version 4.0"},
      {"header.npy", std::string("\x93NUMPY\x01\x00\x00\x10", 10) + "{'descr'", "truncated .npy header"},
      {"garbled.npy", npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 4], }", d8), "shape is not a tuple"},
      {"structured.npy", npy_file(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", d8), "structured dtype"},
      {"extra.npy", npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", d8), "unexpected key 'x'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = path(c.name);
    spit(p, c.bytes);
    expect_user_error([&] { read_npy(p); }, {p, c.problem});
  }
  const std::string p = path("matrix.npy");
  spit(p, npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", std::string(48, '\0')));
  EXPECT_EQ(read_npy(p).shape, (std::vector<int64_t>{3, 4}));  // fine as an array, not as images
  expect_user_error([&] { npy_images_f32(p); }, {p, "expected images [N,1,H,W] or [N,H,W], found shape (3, 4)"});
  const std::string rgb = path("rgb.npy");
  spit(rgb, npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3, 2, 2), }", std::string(12, '\0')));
  expect_user_error([&] { npy_images_f32(rgb); }, {rgb, "found shape (1, 3, 2, 2)"});
  const std::string missing = path("missing.npy");
  expect_user_error([&] { read_npy(missing); }, {missing, ": no such file"});
  // Issue 10 item 4: the file and the format named, whatever stands where the .npy should be.
  const std::string empty = path("empty.npy");
  spit(empty, "");
  expect_user_error([&] { read_npy(empty); }, {empty + ": is empty (0 bytes), not a .npy file"});
  const std::string text = path("text.npy");
  spit(text, "hello");
  expect_user_error([&] { read_npy(text); }, {text + ": not a .npy file (bad magic: it does not start with \\x93NUMPY)"});
  const std::string cut = path("cut.npy");
  spit(cut, std::string("\x93NUMPY\x01", 7));
  expect_user_error([&] { read_npy(cut); }, {cut + ": truncated .npy preamble (7 bytes)"});
  const std::string folder = path("folder.npy");
  fs::create_directories(folder);
  expect_user_error([&] { read_npy(folder); }, {folder + ": is a directory, expected a .npy file"});
  expect_user_error([&] { write_npy(folder, Tensor({2})); }, {"cannot write " + folder + ": is a directory"});
  EXPECT_TRUE(fs::is_directory(folder));
  expect_user_error([&] { write_npy(path("no_dir/out.npy"), Tensor({2})); }, {"cannot write", path("no_dir/out.npy")});
}

// Found by fuzzing (tests/fuzz/regressions/npy): a malformed header's newline stays escaped in the one-line
// message; a zero-size shape whose other dims overflow int64 is refused (counting its elements was UB).
TEST_F(Npy, FuzzFindingsGiveOneLineErrors) {
  spit(path("nl.npy"), npy_file(1, "{'descr': '<f4',\n'fortran_order': Fal}", ""));
  expect_user_error([&] { read_npy(path("nl.npy")); }, {path("nl.npy"), "malformed .npy header", "\\n"});
  spit(path("zero.npy"), npy_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 2147483648, 0), }", ""));
  expect_user_error([&] { read_npy(path("zero.npy")); }, {path("zero.npy"), "is too large"});
}
