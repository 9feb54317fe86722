#include "host/io/safetensors.hpp"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "host/io/atomic_file.hpp"
#include "host/io/json_text.hpp"
#include "engine/error.hpp"
#include "host/io/input_file.hpp"

namespace ebm {

// The format is little-endian; we copy values byte for byte, which is only right on such a host.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;
constexpr const char* kMetadataKey = "__metadata__";

// numel * itemsize, or false when it overflows (a hostile header must not wrap around the bound checks).
bool byte_count(const std::vector<int64_t>& shape, size_t itemsize, uint64_t& out) {
  uint64_t n = itemsize;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  out = n;
  return true;
}

}  // namespace

size_t SafeTensors::itemsize(const std::string& dtype) {
  // Every dtype of the format, so files written by PyTorch with other dtypes still load (and a get of
  // the wrong type is then reported as such, not as a corrupt file).
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::string SafeTensors::where() const { return path_.empty() ? std::string("<in-memory safetensors>") : path_; }

void SafeTensors::put_raw(const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                          const void* src) {
  if (name.empty() || name == kMetadataKey) user_fail("safetensors: invalid tensor name '", name, "'");
  uint64_t nbytes = 0;
  if (!byte_count(shape, itemsize(dtype), nbytes)) user_fail("safetensors: tensor '", name, "' has invalid shape ", shape_str(shape));
  StEntry e{dtype, shape, std::vector<uint8_t>(nbytes)};
  if (nbytes) std::memcpy(e.bytes.data(), src, nbytes);
  entries_[name] = std::move(e);
}

void SafeTensors::put(const std::string& name, const Tensor& t) {
  EBM_CHECK(t.numel() == Tensor::numel_of(t.shape), "tensor data size does not match its shape " + shape_str(t.shape));
  put_f32(name, t.shape, t.ptr());
}
void SafeTensors::put_f32(const std::string& n, const std::vector<int64_t>& s, const float* p) { put_raw(n, "F32", s, p); }
void SafeTensors::put_f64(const std::string& n, const std::vector<int64_t>& s, const double* p) { put_raw(n, "F64", s, p); }
void SafeTensors::put_i64(const std::string& n, const std::vector<int64_t>& s, const int64_t* p) { put_raw(n, "I64", s, p); }
void SafeTensors::put_u64(const std::string& n, const std::vector<int64_t>& s, const uint64_t* p) { put_raw(n, "U64", s, p); }
void SafeTensors::put_i32(const std::string& n, const std::vector<int64_t>& s, const int32_t* p) { put_raw(n, "I32", s, p); }
void SafeTensors::put_u8(const std::string& n, const std::vector<int64_t>& s, const uint8_t* p) { put_raw(n, "U8", s, p); }

const StEntry& SafeTensors::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) user_fail(where(), ": tensor '", name, "' not found");
  return it->second;
}

const StEntry& SafeTensors::typed(const std::string& name, const char* dtype) const {
  const StEntry& e = entry(name);
  if (e.dtype != dtype) user_fail(where(), ": tensor '", name, "' has dtype ", e.dtype, ", expected ", dtype);
  return e;
}

namespace {
template <class T>
std::vector<T> as_vector(const StEntry& e) {
  std::vector<T> v(e.bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), e.bytes.data(), v.size() * sizeof(T));
  return v;
}
}  // namespace

Tensor SafeTensors::get_f32(const std::string& name) const {
  const StEntry& e = typed(name, "F32");
  Tensor t;
  t.shape = e.shape;
  t.data = as_vector<float>(e);
  return t;
}
std::vector<double> SafeTensors::get_f64(const std::string& n) const { return as_vector<double>(typed(n, "F64")); }
std::vector<int64_t> SafeTensors::get_i64(const std::string& n) const { return as_vector<int64_t>(typed(n, "I64")); }
std::vector<uint64_t> SafeTensors::get_u64(const std::string& n) const { return as_vector<uint64_t>(typed(n, "U64")); }
std::vector<int32_t> SafeTensors::get_i32(const std::string& n) const { return as_vector<int32_t>(typed(n, "I32")); }
std::vector<uint8_t> SafeTensors::get_u8(const std::string& n) const { return as_vector<uint8_t>(typed(n, "U8")); }

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

void SafeTensors::save(const std::string& path) const {
  // Widest dtypes first, then by name (as the reference writer does): with the 8-byte-aligned header,
  // every tensor then starts at a multiple of its itemsize, so a mmap reader can use it in place.
  std::vector<const std::pair<const std::string, StEntry>*> order;
  for (const auto& kv : entries_) order.push_back(&kv);
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return itemsize(a->second.dtype) > itemsize(b->second.dtype); });

  json header = json::object();
  uint64_t offset = 0;
  for (const auto* kv : order) {
    const StEntry& e = kv->second;
    header[kv->first] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& ex) {
    user_fail("cannot write ", path, ": header is not valid UTF-8 (", ex.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data buffer then starts 8-byte aligned
  const uint64_t n = text.size();

  write_file_atomic(path, [&](std::ofstream& f) {
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(text.data(), static_cast<std::streamsize>(n));
    for (const auto* kv : order)
      f.write(reinterpret_cast<const char*>(kv->second.bytes.data()), static_cast<std::streamsize>(kv->second.bytes.size()));
  });
}

SafeTensors SafeTensors::load(const std::string& path) {
  require_regular_file(path, "a safetensors file");
  std::ifstream f(path, std::ios::binary);
  if (!f) user_fail("cannot open safetensors file ", path, ": ", std::strerror(errno));
  const std::vector<uint8_t> file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) user_fail("cannot read safetensors file ", path);
  return parse(file, path);
}

namespace {

// The header's JSON. A repeated tensor name is the format's problem, not only JSON's: nlohmann::json
// would keep the last entry silently, so a file with two `dense.bias` would load the one a reader
// other than ours might not take.
json parse_header(const std::vector<uint8_t>& file, uint64_t n, const std::string& path) {
  const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, n);
  JsonText j = read_json_text(text);
  switch (j.problem) {
    case JsonText::Problem::kNone:
      return std::move(j.value);
    case JsonText::Problem::kSyntax:
      user_fail(path, ": invalid JSON header (", j.detail, ")");
    case JsonText::Problem::kNumberOverflow:
      user_fail(path, ": invalid JSON header: number ", j.detail, " at ", shown_key_path(j.key_path),
                " is beyond the range of a double");
    case JsonText::Problem::kDuplicateKey:
      if (j.key_path == j.detail) {  // a top-level key: a tensor name (or __metadata__)
        if (j.detail == kMetadataKey) user_fail(path, ": __metadata__ appears twice in the header");
        user_fail(path, ": tensor '", j.detail, "' appears twice in the header");
      }
      user_fail(path, ": duplicate key ", shown_key_path(j.key_path), " in the header");
  }
  EBM_CHECK(false, "unhandled JSON problem");
}

// One tensor's bytes in the data buffer, [begin, end).
struct Span {
  uint64_t begin, end;
  const std::string* name;
  StEntry* entry;
};

// The format's rule (the reference implementation enforces it): sorted by offsets, the tensors cover
// the data buffer exactly, each starting where the one before ends. So no two tensors share bytes
// (an entry pointing into another's bytes would load the wrong weights without a word), no bytes
// belong to no tensor, and nothing follows the last one. A zero-size tensor fits only at a boundary.
void check_coverage(std::vector<Span> spans, uint64_t buffer_size, const std::string& path) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, *a.name) < std::tie(b.begin, b.end, *b.name);
  });
  auto shown = [](const Span& s) { return "'" + *s.name + "' [" + std::to_string(s.begin) + ", " + std::to_string(s.end) + ")"; };
  uint64_t covered = 0;
  const Span* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin < covered) user_fail(path, ": tensors ", shown(*prev), " and ", shown(s), " overlap");
    if (s.begin > covered && !prev)
      user_fail(path, ": data bytes [0, ", s.begin, ") before the first tensor ", shown(s), " belong to no tensor");
    if (s.begin > covered)
      user_fail(path, ": data bytes [", covered, ", ", s.begin, ") between tensors ", shown(*prev), " and ", shown(s),
                " belong to no tensor");
    covered = s.end;
    prev = &s;
  }
  if (covered == buffer_size) return;
  if (!prev) user_fail(path, ": the ", buffer_size, "-byte data buffer holds no tensor");
  user_fail(path, ": data bytes [", covered, ", ", buffer_size, ") after the last tensor ", shown(*prev),
            " belong to no tensor");
}

}  // namespace

SafeTensors SafeTensors::parse(const std::vector<uint8_t>& file, const std::string& path) {
  const uint64_t size = file.size();
  if (size < 8) user_fail(path, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  if (n > size - 8) user_fail(path, ": header length ", n, " exceeds the file size ", size, " (truncated or not safetensors)");

  const json header = parse_header(file, n, path);
  if (!header.is_object()) user_fail(path, ": header is not a JSON object");

  SafeTensors st;
  st.path_ = path;
  const uint8_t* buffer = file.data() + 8 + n;
  const uint64_t buffer_size = size - 8 - n;
  std::vector<Span> spans;
  for (const auto& [name, v] : header.items()) {
    if (name == kMetadataKey) {
      if (!v.is_object()) user_fail(path, ": __metadata__ is not a JSON object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) user_fail(path, ": __metadata__ value '", k, "' is not a string");
        st.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string t = "tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      user_fail(path, ": ", t, " needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) user_fail(path, ": ", t, " has a non-string dtype");
    StEntry e;
    e.dtype = v["dtype"].get<std::string>();
    const size_t isz = itemsize(e.dtype);
    if (isz == 0) user_fail(path, ": ", t, " has unknown dtype '", e.dtype, "'");
    if (!v["shape"].is_array()) user_fail(path, ": ", t, " shape is not a list");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) user_fail(path, ": ", t, " shape ", shown_json(v["shape"]), " is not a list of sizes");
      e.shape.push_back(d.get<int64_t>());
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      user_fail(path, ": ", t, " data_offsets ", shown_json(off), " is not [begin, end]");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    uint64_t nbytes = 0;
    if (!byte_count(e.shape, isz, nbytes)) user_fail(path, ": ", t, " shape ", shape_str(e.shape), " is too large");
    if (begin > end || end > buffer_size)
      user_fail(path, ": ", t, " data_offsets [", begin, ", ", end, "] lie outside the ", buffer_size, "-byte data buffer");
    if (end - begin != nbytes)
      user_fail(path, ": ", t, " shape ", shape_str(e.shape), " ", e.dtype, " needs ", nbytes, " bytes but data_offsets [",
                begin, ", ", end, "] span ", end - begin);
    auto [it, added] = st.entries_.emplace(name, std::move(e));
    EBM_CHECK(added, "a repeated tensor name passed the header check");
    spans.push_back({begin, end, &it->first, &it->second});
  }
  // Bytes are copied only once the layout is known to be sound: overlapping entries could otherwise ask
  // for many copies of one large region.
  check_coverage(spans, buffer_size, path);
  for (const Span& s : spans) s.entry->bytes.assign(buffer + s.begin, buffer + s.end);
  return st;
}

}  // namespace ebm
