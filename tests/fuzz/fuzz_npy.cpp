// libFuzzer target: .npy files (host/io/npy.cpp) through parse_npy and, for inputs that parse, the
// tools' image reader npy_images_f32.
// On success: dtype '<f4' or '|u1' with exactly numel(shape) values of it; a '<f4' array written with
// write_npy and read again is the same shape and the same bits; npy_images_f32 gives [N,1,H,W] with
// numel values.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "host/io/npy.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

constexpr const char* kPath = "fuzz.npy";

// numel(shape) with every partial product checked against int64 (what Tensor::numel_of computes
// unchecked); false when a dimension is negative or a partial product overflows.
bool checked_numel(const std::vector<int64_t>& shape, int64_t& out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  out = n;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> file(data, data + size);
  ebm::NpyArray a;
  if (!ebm::fuzz::parse("parse_npy", {kPath}, [&] { a = ebm::parse_npy(file, kPath); })) return 0;

  int64_t numel = 0;
  FUZZ_CHECK(checked_numel(a.shape, numel), "shape " + ebm::shape_str(a.shape) + " overflows int64");
  if (a.dtype == "<f4") {
    FUZZ_CHECK(int64_t(a.f32.size()) == numel && a.u8.empty(), "'<f4' " + ebm::shape_str(a.shape) + " holds " +
                                                                  std::to_string(a.f32.size()) + " floats");
    ebm::Tensor t;
    t.shape = a.shape;
    t.data = a.f32;
    const std::string p = ebm::fuzz::scratch().path("rt.npy");
    ebm::NpyArray back;
    if (!ebm::fuzz::must_succeed("write_npy/read_npy", [&] {
          ebm::write_npy(p, t);
          back = ebm::read_npy(p);
        }))
      return 0;
    FUZZ_CHECK(back.dtype == "<f4" && back.shape == a.shape, "round trip gave " + back.dtype + " " +
                                                                 ebm::shape_str(back.shape));
    FUZZ_CHECK(back.f32.size() == a.f32.size() &&
                   (a.f32.empty() || std::memcmp(back.f32.data(), a.f32.data(), a.f32.size() * 4) == 0),
               "values differ after a round trip");
  } else {
    FUZZ_CHECK(a.dtype == "|u1", "dtype '" + a.dtype + "'");
    FUZZ_CHECK(int64_t(a.u8.size()) == numel && a.f32.empty(), "'|u1' " + ebm::shape_str(a.shape) + " holds " +
                                                                  std::to_string(a.u8.size()) + " bytes");
  }

  // The same bytes as a file, through what ebm_score and ebm_sample --init read.
  const std::string path = ebm::fuzz::scratch().write("input.npy", data, size);
  ebm::Tensor t;
  if (ebm::fuzz::parse("npy_images_f32", {path}, [&] { t = ebm::npy_images_f32(path); })) {
    FUZZ_CHECK(t.shape.size() == 4 && t.shape[1] == 1, "images shape " + ebm::shape_str(t.shape));
    int64_t n = 0;
    FUZZ_CHECK(checked_numel(t.shape, n) && n == t.numel(), "images shape " + ebm::shape_str(t.shape) + " with " +
                                                                std::to_string(t.numel()) + " values");
  }
  return 0;
}
