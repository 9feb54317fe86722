// safetensors files (https://github.com/huggingface/safetensors): u64 little-endian header length N,
// N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the byte buffer the offsets index into. Checkpoints use it so PyTorch reads them directly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace ebm {

// One tensor as stored: safetensors dtype name ("F32", "F64", "I64", "U64", "I32", "U8", ...),
// shape, and the raw little-endian bytes (numel * itemsize of them).
struct StEntry {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

class SafeTensors {
 public:
  std::map<std::string, std::string> metadata;  // the header's "__metadata__" (omitted when empty)

  // put*: add or replace a tensor; `src` holds numel(shape) values in C order.
  void put(const std::string& name, const Tensor& t);
  void put_f32(const std::string& name, const std::vector<int64_t>& shape, const float* src);
  void put_f64(const std::string& name, const std::vector<int64_t>& shape, const double* src);
  void put_i64(const std::string& name, const std::vector<int64_t>& shape, const int64_t* src);
  void put_u64(const std::string& name, const std::vector<int64_t>& shape, const uint64_t* src);
  void put_i32(const std::string& name, const std::vector<int64_t>& shape, const int32_t* src);
  void put_u8(const std::string& name, const std::vector<int64_t>& shape, const uint8_t* src);

  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  // get*: UserError naming the tensor and the file when it is missing or has another dtype.
  Tensor get_f32(const std::string& name) const;
  std::vector<double> get_f64(const std::string& name) const;
  std::vector<int64_t> get_i64(const std::string& name) const;
  std::vector<uint64_t> get_u64(const std::string& name) const;
  std::vector<int32_t> get_i32(const std::string& name) const;
  std::vector<uint8_t> get_u8(const std::string& name) const;
  const StEntry& entry(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::string& source() const { return path_; }  // the file it was loaded from ("" if built here)

  // Writes `path + ".tmp"` then renames it over `path`, so readers never see half a file.
  void save(const std::string& path) const;
  // Validates the whole file (sizes, header JSON, dtypes, shapes against offsets, bounds) and throws
  // UserError naming the file and the problem.
  static SafeTensors load(const std::string& path);
  // The same from the file's bytes; `path` only names the source in messages.
  static SafeTensors parse(const std::vector<uint8_t>& file, const std::string& path);

  static size_t itemsize(const std::string& dtype);  // 0 for an unknown dtype

 private:
  void put_raw(const std::string& name, const char* dtype, const std::vector<int64_t>& shape, const void* src);
  const StEntry& typed(const std::string& name, const char* dtype) const;
  std::string where() const;

  std::map<std::string, StEntry> entries_;
  std::string path_;
};

}  // namespace ebm
