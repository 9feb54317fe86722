// NumPy .npy files (format versions 1.0, 2.0 and 3.0): the tools' image and energy interchange
// (DESIGN §4: float32 [N,1,H,W] in [-1,1]). Only C-order '<f4' and uint8 ('|u1') arrays are read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace ebm {

struct NpyArray {
  std::string dtype;            // "<f4" (values in f32) or "|u1" (values in u8)
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<uint8_t> u8;
};

// Any shape; UserError naming the file and what was found for another dtype, Fortran order, bad magic,
// an unsupported version, a malformed header or truncated data.
NpyArray read_npy(const std::string& path);
// The same from the file's bytes; `path` only names the source in messages.
NpyArray parse_npy(const std::vector<uint8_t>& file, const std::string& path);

// Images as [N,1,H,W] float32: accepts [N,1,H,W] or [N,H,W]; '|u1' pixels u are mapped to
// (u - 127.5) / 127.5 in [-1,1], the data pipeline's normalisation (DESIGN §1).
Tensor npy_images_f32(const std::string& path);

// '<f4', C order, version 1.0 (2.0 only if the header outgrows 64 KiB); writes path.tmp then renames.
void write_npy(const std::string& path, const Tensor& t);

// The header dict as numpy writes it, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".
std::string npy_header_dict(const std::string& descr, const std::vector<int64_t>& shape);

}  // namespace ebm
