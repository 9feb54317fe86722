// IDX files (the MNIST container), raw or gzip-compressed: magic 0x00 0x00 <type> <ndims>, ndims
// big-endian u32 dims, then the elements in C order. Only type 0x08 (unsigned byte) is supported:
// it is what MNIST and Fashion-MNIST use. Every error is a UserError naming the file and the problem.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

struct IdxU8 {
  std::vector<uint32_t> dims;  // 1..4 dims, e.g. {60000, 28, 28}
  std::vector<uint8_t> data;   // prod(dims) bytes, C order
};

// Whether this build reads and writes gzip IDX files (it has zlib); without it a gzip file is a UserError
// naming the file and saying so, and raw IDX files work as ever.
bool gzip_available();

// Reads a raw or gzip IDX file; gzip is detected by its 1f 8b magic, not by the file name.
IdxU8 read_idx_u8(const std::string& path);
// The same from the file's bytes (raw or gzip); `path` only names the source in messages.
IdxU8 parse_idx_u8(std::vector<uint8_t> bytes, const std::string& path);

// Writes `idx` (dims must describe data.size() bytes) raw, or gzip-compressed when `gzip`.
void write_idx_u8(const std::string& path, const IdxU8& idx, bool gzip);

// An image set as stored: pixels u8 [n,h,w], labels u8 [n] (empty when no labels file was given).
struct IdxImages {
  int64_t n = 0;
  int h = 0, w = 0;
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> labels;
};

// Reads a 3-D images file and, when `labels_path` is not empty, its 1-D labels file; the counts
// must agree (the message names both files).
IdxImages read_idx_images(const std::string& images_path, const std::string& labels_path = "");

// "60000x28x28": dims as the messages print them.
std::string idx_dims_str(const std::vector<uint32_t>& dims);

}  // namespace ebm
