// safetensors: round trips, the byte layout of what we write, a hand-built file per the spec, and
// every rejection naming the file and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "host/io/safetensors.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

using test::expect_user_error;

class Safetensors : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ / name; }
  test::TempDir dir_;
};

using test::slurp;
using test::spit;

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i) & 0xff);
  return s;
}

// A file per the spec: u64 header length, the JSON header, the data buffer.
std::string st_file(const std::string& header, const std::string& buffer) { return u64le(header.size()) + header + buffer; }

// The call throws UserError whose message holds every one of `parts`.

}  // namespace

TEST_F(Safetensors, RoundTripAllDtypes) {
  Tensor w({2, 1, 3, 3});
  for (int64_t i = 0; i < w.numel(); ++i) w.data[i] = std::sin(0.7f * i) * 1e3f;
  w.data[3] = -0.f;
  w.data[4] = std::numeric_limits<float>::denorm_min();
  const std::vector<int64_t> i64{-1, 0, int64_t{1} << 62, std::numeric_limits<int64_t>::min()};
  const std::vector<uint64_t> u64{~0ull, 12345678901234567ull};
  const std::vector<int32_t> i32{-7, 7, 1 << 30};
  const std::vector<double> f64{M_PI, -1e300};
  const std::vector<uint8_t> u8{0, 1, 254, 255, 128};

  SafeTensors st;
  st.put("convs.0.weight", w);
  st.put_i64("step", {2, 2}, i64.data());
  st.put_u64("rng", {2}, u64.data());
  st.put_i32("i32", {3}, i32.data());
  st.put_f64("f64", {2}, f64.data());
  st.put_u8("bytes", {5}, u8.data());
  st.put_f32("empty", {0, 4}, nullptr);
  const float one = 1.5f;
  st.put_f32("scalar", {}, &one);
  st.metadata["format"] = "pt";
  st.metadata["note"] = "epoch 3";
  const std::string p = path("rt.safetensors");
  st.save(p);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  const SafeTensors back = SafeTensors::load(p);
  EXPECT_EQ(back.source(), p);
  EXPECT_EQ(back.names(), (std::vector<std::string>{"bytes", "convs.0.weight", "empty", "f64", "i32", "rng", "scalar", "step"}));
  const Tensor w2 = back.get_f32("convs.0.weight");
  EXPECT_EQ(w2.shape, w.shape);
  ASSERT_EQ(w2.data.size(), w.data.size());
  EXPECT_EQ(std::memcmp(w2.data.data(), w.data.data(), w.data.size() * 4), 0);  // bit-exact, -0 included
  EXPECT_EQ(back.get_i64("step"), i64);
  EXPECT_EQ(back.entry("step").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(back.get_u64("rng"), u64);
  EXPECT_EQ(back.get_i32("i32"), i32);
  EXPECT_EQ(back.get_f64("f64"), f64);
  EXPECT_EQ(back.get_u8("bytes"), u8);
  EXPECT_EQ(back.get_f32("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(back.get_f32("empty").data.empty());
  EXPECT_EQ(back.get_f32("scalar").data, std::vector<float>{1.5f});
  EXPECT_TRUE(back.get_f32("scalar").shape.empty());
  EXPECT_EQ(back.metadata, st.metadata);
  EXPECT_TRUE(back.has("rng"));
  EXPECT_FALSE(back.has("nope"));

  // Saving over an existing file replaces it.
  SafeTensors small;
  small.put_u8("x", {1}, u8.data());
  small.save(p);
  EXPECT_EQ(SafeTensors::load(p).names(), std::vector<std::string>{"x"});
}

TEST_F(Safetensors, SavedByteLayout) {
  SafeTensors st;
  const std::vector<float> w{1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  const std::vector<int64_t> step{42};
  const std::vector<uint8_t> u{9, 8, 7, 6, 5};
  st.put_f32("w", {2, 3}, w.data());
  st.put_i64("step", {1}, step.data());
  st.put_u8("u", {5}, u.data());
  st.metadata["format"] = "pt";
  const std::string p = path("layout.safetensors");
  st.save(p);

  const std::string bytes = slurp(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header is padded so the data buffer is 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 8 + 24 + 5);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));  // only spaces after the JSON
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["format"], "pt");
  // Widest dtype first so every tensor is aligned to its itemsize: step (I64), w (F32), u (U8).
  EXPECT_EQ(j["step"]["dtype"], "I64");
  EXPECT_EQ(j["step"]["shape"], nlohmann::json::array({1}));
  EXPECT_EQ(j["step"]["data_offsets"], nlohmann::json::array({0, 8}));
  EXPECT_EQ(j["w"]["dtype"], "F32");
  EXPECT_EQ(j["w"]["shape"], nlohmann::json::array({2, 3}));
  EXPECT_EQ(j["w"]["data_offsets"], nlohmann::json::array({8, 32}));
  EXPECT_EQ(j["u"]["dtype"], "U8");
  EXPECT_EQ(j["u"]["data_offsets"], nlohmann::json::array({32, 37}));
  const std::string buffer = bytes.substr(8 + n);
  EXPECT_EQ(buffer, raw(step) + raw(w) + raw(u));
}

TEST_F(Safetensors, LoadsHandBuiltFile) {
  // As the reference writer lays it out; unpadded header and tensors not in name order are both legal.
  const std::vector<float> a{0.5f, -1.f, 2.25f, 3.f};
  const std::vector<int64_t> b{7, -8, 9};
  const std::string header =
      R"({"b":{"dtype":"I64","shape":[3],"data_offsets":[16,40]},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}})";
  const std::string p = path("hand.safetensors");
  spit(p, st_file(header, raw(a) + raw(b)));
  const SafeTensors st = SafeTensors::load(p);
  const Tensor ta = st.get_f32("a");
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ta.data, a);
  EXPECT_EQ(st.get_i64("b"), b);
  EXPECT_EQ(st.metadata.at("format"), "pt");
}

TEST_F(Safetensors, RejectsBadFiles) {
  const std::string f4 = std::string(16, '\0');
  struct Case {
    std::string name, bytes, problem;
  } cases[] = {
      {"short.safetensors", "abc", "shorter than the 8-byte header length"},
      {"long_header.safetensors", u64le(1000) + "{}", "header length 1000 exceeds the file size 10"},
      {"bad_json.safetensors", st_file(R"({"a": {"dtype": )", ""), "invalid JSON header"},
      {"not_object.safetensors", st_file("[1,2]", ""), "header is not a JSON object"},
      {"dtype.safetensors", st_file(R"({"a":{"dtype":"F17","shape":[4],"data_offsets":[0,16]}})", f4), "tensor 'a' has unknown dtype 'F17'"},
      {"mismatch.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", f4),
       "tensor 'a' shape [3] F32 needs 12 bytes but data_offsets [0, 16] span 16"},
      {"outside.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", f4),
       "tensor 'a' data_offsets [0, 32] lie outside the 16-byte data buffer"},
      {"reversed.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", f4), "data_offsets [8, 4] lie outside"},
      {"neg_shape.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", f4), "is not a list of sizes"},
      {"no_offsets.safetensors", st_file(R"({"a":{"dtype":"F32","shape":[4]}})", f4), "tensor 'a' needs dtype, shape and data_offsets"},
      {"huge.safetensors", st_file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", f4),
       "is too large"},
      {"meta.safetensors", st_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value 'k' is not a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = path(c.name);
    spit(p, c.bytes);
    expect_user_error([&] { SafeTensors::load(p); }, {p, c.problem});
  }
  const std::string missing = path("missing.safetensors");
  expect_user_error([&] { SafeTensors::load(missing); }, {missing, ": no such file"});
}

TEST_F(Safetensors, GetNamesTensorAndFile) {
  const std::vector<int64_t> v{1, 2};
  SafeTensors st;
  st.put_i64("step", {2}, v.data());
  const std::string p = path("get.safetensors");
  st.save(p);
  const SafeTensors back = SafeTensors::load(p);
  expect_user_error([&] { back.get_f32("dense.weight"); }, {p, "tensor 'dense.weight' not found"});
  expect_user_error([&] { back.get_f32("step"); }, {p, "tensor 'step' has dtype I64, expected F32"});
  expect_user_error([&] { back.get_u64("step"); }, {p, "expected U64"});
}

TEST_F(Safetensors, SaveToUnwritablePathNamesIt) {
  SafeTensors st;
  const std::string p = path("no_such_dir/model.safetensors");
  expect_user_error([&] { st.save(p); }, {"cannot write", p});
}

// Issue 10 item 3: the data buffer must be covered exactly by the tensors.
TEST_F(Safetensors, TensorsMustCoverTheDataBufferExactly) {
  // The reproduction: dense.weight's offsets point into convs.0.weight's bytes. Both entries are well
  // formed on their own (sizes match their shapes, offsets lie inside the buffer); before, this file
  // loaded and dense.weight silently read 176 of convs.0.weight's bytes.
  const std::string overlap = path("model.safetensors");
  spit(overlap, st_file(R"({"convs.0.weight":{"dtype":"F32","shape":[16,1,3,3],"data_offsets":[0,576]},)"
                        R"("dense.weight":{"dtype":"F32","shape":[1,256],"data_offsets":[400,1424]}})",
                        std::string(1424, '\1')));
  expect_user_error([&] { SafeTensors::load(overlap); },
                    {overlap + ": tensors 'convs.0.weight' [0, 576) and 'dense.weight' [400, 1424) overlap"});

  const std::string f4(16, '\0'), f6(24, '\0');
  struct Case {
    std::string name, header, buffer, problem;
  } cases[] = {
      {"same_bytes", R"({"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
       f4, "tensors 'a' [0, 16) and 'b' [0, 16) overlap"},
      {"hole", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[6],"data_offsets":[20,44]}})",
       std::string(44, '\0'), "data bytes [16, 20) between tensors 'a' [0, 16) and 'b' [20, 44) belong to no tensor"},
      {"hole_first", R"({"b":{"dtype":"F32","shape":[6],"data_offsets":[4,28]}})", std::string(28, '\0'),
       "data bytes [0, 4) before the first tensor 'b' [4, 28) belong to no tensor"},
      {"trailing", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(20, '\0'),
       "data bytes [16, 20) after the last tensor 'a' [0, 16) belong to no tensor"},
      {"no_tensor", R"({"__metadata__":{"format":"pt"}})", std::string(8, '\0'), "the 8-byte data buffer holds no tensor"},
      // A zero-size tensor inside another's bytes breaks contiguity (the reference reader refuses it too).
      {"empty_inside", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                       R"("b":{"dtype":"F32","shape":[6],"data_offsets":[16,40]}})",
       std::string(40, '\0'), "tensors 'a' [0, 16) and 'z' [8, 8) overlap"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = path(c.name + ".safetensors");
    spit(p, st_file(c.header, c.buffer));
    expect_user_error([&] { SafeTensors::load(p); }, {p + ": " + c.problem});
  }

  // Zero-size tensors at a boundary (start, between two tensors, end, two at one offset) keep it contiguous.
  const std::vector<float> a{1, 2, 3, 4}, b{5, 6, 7, 8, 9, 10};
  const std::string ok = path("zero_size.safetensors");
  spit(ok, st_file(R"({"z0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                   R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                   R"("z1":{"dtype":"U8","shape":[0,3],"data_offsets":[16,16]},"z2":{"dtype":"I64","shape":[0],"data_offsets":[16,16]},)"
                   R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]},)"
                   R"("z3":{"dtype":"F32","shape":[0],"data_offsets":[40,40]}})",
                   raw(a) + raw(b)));
  const SafeTensors st = SafeTensors::load(ok);
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b", "z0", "z1", "z2", "z3"}));
  EXPECT_EQ(st.get_f32("a").data, a);
  EXPECT_EQ(st.get_f32("b").data, b);
  EXPECT_TRUE(st.get_u8("z1").empty());
  EXPECT_EQ(st.entry("z1").shape, (std::vector<int64_t>{0, 3}));
}

TEST_F(Safetensors, RepeatedNamesAndKeysAreRejected) {
  // The reproduction: a second dense.bias entry (other offsets) was silently taken, the first dropped.
  const std::vector<float> w{1, 2, 3, 4}, bias{0.5f};
  const std::string dup = path("dup.safetensors");
  spit(dup, st_file(R"({"dense.bias":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
                    R"("dense.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},)"
                    R"("dense.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                    raw(w) + raw(bias)));
  expect_user_error([&] { SafeTensors::load(dup); }, {dup + ": tensor 'dense.bias' appears twice in the header"});

  const std::string meta = path("meta2.safetensors");
  spit(meta, st_file(R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}})", ""));
  expect_user_error([&] { SafeTensors::load(meta); }, {meta + ": __metadata__ appears twice in the header"});

  const std::string inner = path("inner.safetensors");
  spit(inner, st_file(R"({"a":{"dtype":"F32","dtype":"U8","shape":[4],"data_offsets":[0,16]}})", std::string(16, '\0')));
  expect_user_error([&] { SafeTensors::load(inner); }, {inner + ": duplicate key \"a.dtype\" in the header"});

  // One name in two different objects is not a repetition.
  const std::string fine = path("fine.safetensors");
  spit(fine, st_file(R"({"__metadata__":{"dtype":"x"},"dtype":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", raw(w)));
  EXPECT_EQ(SafeTensors::load(fine).get_f32("dtype").data, w);
}

TEST_F(Safetensors, NumbersBeyondADoubleAndDirectoriesNameTheFile) {
  const std::string big = path("big.safetensors");
  spit(big, st_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,1e999]}})", std::string(16, '\0')));
  expect_user_error([&] { SafeTensors::load(big); },
                    {big + ": invalid JSON header: number 1e999 at \"a.data_offsets[1]\" is beyond the range of a double"});
  const std::string folder = path("folder.safetensors");
  fs::create_directories(folder);
  expect_user_error([&] { SafeTensors::load(folder); }, {folder + ": is a directory, expected a safetensors file"});
  SafeTensors st;
  expect_user_error([&] { st.save(folder); }, {"cannot write " + folder + ": is a directory"});
  EXPECT_TRUE(fs::is_directory(folder));
}

// Found by fuzzing (tests/fuzz/regressions/safetensors): a tensor name with a newline stays on one line in
// the message; a shape nested 200,000 deep is refused (printing it used to overflow the stack).
TEST_F(Safetensors, FuzzFindingsGiveOneLineErrors) {
  spit(path("nl.safetensors"), st_file(R"({"a\nb":{"dtype":"F32"}})", ""));
  expect_user_error([&] { SafeTensors::load(path("nl.safetensors")); }, {path("nl.safetensors"), "'a\\nb'"});
  const std::string deep = R"({"a":{"dtype":"F32","shape":)" + std::string(200000, '[') + std::string(200000, ']') +
                           R"(,"data_offsets":[0,0]}})";
  spit(path("deep.safetensors"), st_file(deep, ""));
  expect_user_error([&] { SafeTensors::load(path("deep.safetensors")); },
                    {path("deep.safetensors"), "nested deeper than 64 levels"});
}
