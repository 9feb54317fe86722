// libFuzzer target: IDX files, raw or gzip (host/io/idx.cpp), through parse_idx_u8 and, for inputs that
// parse, read_idx_images (with and without a labels file).
// On success: 1..4 dims whose product is the data size; written back (raw and gzip) and read again,
// the same dims and bytes; read_idx_images agrees with the parse.
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/idx.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

using ebm::IdxU8;
constexpr const char* kPath = "fuzz.idx";

uint64_t product(const std::vector<uint32_t>& dims) {
  uint64_t p = 1;
  for (uint32_t d : dims) {
    if (__builtin_mul_overflow(p, uint64_t{d}, &p)) return UINT64_MAX;
  }
  return p;
}

// Writes `idx` raw or gzip and reads it back: the same dims and data.
void check_round_trip(const IdxU8& idx, bool gzip) {
  const std::string p = ebm::fuzz::scratch().path(gzip ? "rt.idx.gz" : "rt.idx");
  IdxU8 back;
  if (!ebm::fuzz::must_succeed("write_idx_u8/read_idx_u8", [&] {
        ebm::write_idx_u8(p, idx, gzip);
        back = ebm::read_idx_u8(p);
      }))
    return;
  FUZZ_CHECK(back.dims == idx.dims, "dims " + ebm::idx_dims_str(back.dims) + " != " + ebm::idx_dims_str(idx.dims));
  FUZZ_CHECK(back.data == idx.data, "data differs after a round trip");
}

// A valid images file (3 images of 2x2) and labels file (3 labels) to pair with the input.
const std::string& fixed_file(bool labels) {
  static const std::string images = [] {
    IdxU8 a{{3, 2, 2}, std::vector<uint8_t>(12, 7)};
    const std::string p = ebm::fuzz::scratch().path("fixed-images.idx");
    ebm::write_idx_u8(p, a, false);
    return p;
  }();
  static const std::string labs = [] {
    IdxU8 a{{3}, {1, 2, 3}};
    const std::string p = ebm::fuzz::scratch().path("fixed-labels.idx");
    ebm::write_idx_u8(p, a, false);
    return p;
  }();
  return labels ? labs : images;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  IdxU8 idx;
  if (!ebm::fuzz::parse("parse_idx_u8", {kPath}, [&] { idx = ebm::parse_idx_u8({data, data + size}, kPath); })) return 0;

  FUZZ_CHECK(idx.dims.size() >= 1 && idx.dims.size() <= 4, std::to_string(idx.dims.size()) + " dims");
  FUZZ_CHECK(product(idx.dims) == idx.data.size(),
             ebm::idx_dims_str(idx.dims) + " but " + std::to_string(idx.data.size()) + " bytes");
  if (idx.data.size() <= (size_t{1} << 16)) {  // gzip bombs inflate to megabytes: keep the round trip cheap
    check_round_trip(idx, false);
    check_round_trip(idx, true);
  }

  // The same bytes as a file, through the data pipeline's entry point. The labels side gets a fixed
  // file of 3 labels (or, when the input is 1-D, the input is the labels of 3 fixed images).
  const std::string file = ebm::fuzz::scratch().write("input.idx", data, size);
  ebm::IdxImages img;
  if (ebm::fuzz::parse("read_idx_images", {file}, [&] { img = ebm::read_idx_images(file); })) {
    FUZZ_CHECK(idx.dims.size() == 3, "read_idx_images took " + ebm::idx_dims_str(idx.dims) + " as images");
    FUZZ_CHECK(img.n == idx.dims[0] && uint32_t(img.h) == idx.dims[1] && uint32_t(img.w) == idx.dims[2],
               "images " + std::to_string(img.n) + "x" + std::to_string(img.h) + "x" + std::to_string(img.w) +
                   " from " + ebm::idx_dims_str(idx.dims));
    FUZZ_CHECK(img.pixels == idx.data && img.labels.empty(), "pixels differ from the parse");
  }
  const bool input_is_labels = idx.dims.size() == 1;
  const std::string& images = input_is_labels ? fixed_file(false) : file;
  const std::string& labels = input_is_labels ? file : fixed_file(true);
  if (ebm::fuzz::parse("read_idx_images with labels", {images, labels}, [&] { img = ebm::read_idx_images(images, labels); })) {
    FUZZ_CHECK(img.n == 3 && img.labels.size() == 3, "images and labels counts differ: " + std::to_string(img.n) +
                                                         " and " + std::to_string(img.labels.size()));
    FUZZ_CHECK(img.pixels.size() == uint64_t(img.n) * uint64_t(img.h) * uint64_t(img.w), "pixel count");
  }
  return 0;
}
