#include "host/io/npy.hpp"

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "host/io/atomic_file.hpp"
#include "engine/error.hpp"
#include "host/io/input_file.hpp"

namespace ebm {

// '<f4' data is copied byte for byte, which is only right on a little-endian host.
static_assert(std::endian::native == std::endian::little, ".npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

std::string shape_tuple(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header is a Python dict literal; numpy writes only strings, True/False and tuples of ints in it,
// so a small recursive-descent reader covers every file numpy produces.
struct HeaderReader {
  const std::string& s;
  const std::string& path;
  size_t i = 0;

  [[noreturn]] void bad(const std::string& what) const {
    user_fail(path, ": malformed .npy header (", what, "): ", s.substr(0, s.find_last_not_of(" \n") + 1));
  }
  void ws() { while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i; }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) return ++i, true;
    return false;
  }
  bool at_string() { ws(); return i < s.size() && (s[i] == '\'' || s[i] == '"'); }
  std::string string() {
    if (!at_string()) bad("expected a quoted string at offset " + std::to_string(i));
    const char q = s[i++];
    const size_t j = s.find(q, i);
    if (j == std::string::npos) bad("unterminated string");
    std::string out = s.substr(i, j - i);
    i = j + 1;
    return out;
  }
  bool boolean() {
    ws();
    if (s.compare(i, 4, "True") == 0) return i += 4, true;
    if (s.compare(i, 5, "False") == 0) return i += 5, false;
    bad("expected True or False");
  }
  std::vector<int64_t> tuple() {
    if (!eat('(')) bad("shape is not a tuple");
    std::vector<int64_t> out;
    while (!eat(')')) {
      ws();
      if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) bad("shape holds a non-integer");
      int64_t v = 0;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        if (v > (int64_t{1} << 50)) bad("dimension too large");
        v = v * 10 + (s[i++] - '0');
      }
      if (i < s.size() && s[i] == 'L') ++i;  // Python 2 longs
      out.push_back(v);
      if (!eat(',') && !(ws(), i < s.size() && s[i] == ')')) bad("expected ',' or ')' in shape");
    }
    return out;
  }
};

std::vector<uint8_t> read_file(const std::string& path) {
  require_regular_file(path, "a .npy file");
  std::ifstream f(path, std::ios::binary);
  if (!f) user_fail("cannot open .npy file ", path, ": ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) user_fail("cannot read .npy file ", path);
  return bytes;
}

}  // namespace

std::string npy_header_dict(const std::string& descr, const std::vector<int64_t>& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

NpyArray parse_npy(const std::vector<uint8_t>& file, const std::string& path) {
  if (file.empty()) user_fail(path, ": is empty (0 bytes), not a .npy file");
  if (file.size() < kMagicLen || std::memcmp(file.data(), kMagic, kMagicLen) != 0)
    user_fail(path, ": not a .npy file (bad magic: it does not start with \\x93NUMPY)");
  if (file.size() < kMagicLen + 2) user_fail(path, ": truncated .npy preamble (", file.size(), " bytes)");
  const int major = file[6], minor = file[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    user_fail(path, ": unsupported .npy format version ", major, ".", minor, " (supported: 1.0, 2.0, 3.0)");
  // v1: u16 header length; v2/v3 (headers over 64 KiB; v3 allows UTF-8): u32.
  const size_t len_bytes = major == 1 ? 2 : 4;
  if (file.size() < 8 + len_bytes) user_fail(path, ": truncated .npy preamble (", file.size(), " bytes)");
  uint32_t hlen = 0;
  for (size_t k = 0; k < len_bytes; ++k) hlen |= uint32_t{file[8 + k]} << (8 * k);
  const size_t data_start = 8 + len_bytes + hlen;
  if (file.size() < data_start) user_fail(path, ": truncated .npy header (", hlen, " bytes announced, file has ", file.size(), ")");
  const std::string header(file.begin() + 8 + len_bytes, file.begin() + data_start);

  HeaderReader r{header, path};
  std::string descr;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  NpyArray a;
  if (!r.eat('{')) r.bad("expected '{'");
  while (!r.eat('}')) {
    const std::string key = r.string();
    if (!r.eat(':')) r.bad("expected ':' after '" + key + "'");
    if (key == "descr") {
      if (!r.at_string()) user_fail(path, ": unsupported structured dtype (expected '<f4' float32 or '|u1' uint8)");
      descr = r.string(), have_descr = true;
    } else if (key == "fortran_order") {
      fortran = r.boolean(), have_order = true;
    } else if (key == "shape") {
      a.shape = r.tuple(), have_shape = true;
    } else {
      r.bad("unexpected key '" + key + "'");
    }
    if (!r.eat(',') && !(r.ws(), r.i < header.size() && header[r.i] == '}')) r.bad("expected ',' or '}'");
  }
  if (!have_descr || !have_order || !have_shape) r.bad("needs 'descr', 'fortran_order' and 'shape'");

  // A uint8 has no byte order, so numpy's '|u1' and the equivalent '<u1'/'>u1' are all accepted.
  size_t itemsize = 0;
  if (descr == "<f4") a.dtype = "<f4", itemsize = 4;
  else if (descr == "|u1" || descr == "<u1" || descr == ">u1") a.dtype = "|u1", itemsize = 1;
  else user_fail(path, ": unsupported dtype '", descr, "' (expected '<f4' float32 or '|u1' uint8)");
  if (fortran) user_fail(path, ": fortran_order is True; only C-order arrays are supported (save np.ascontiguousarray(a))");

  // Every shape must have an element count an int64 holds, even one with a zero in it (then no byte bound
  // would catch (2^32, 2^31, 0), whose other dims' product overflows the count's type downstream).
  int64_t nonzero = 1;
  for (int64_t d : a.shape)
    if (d != 0 && __builtin_mul_overflow(nonzero, d, &nonzero))
      user_fail(path, ": shape ", shape_tuple(a.shape), " is too large (its dimensions' product exceeds 2^63)");
  uint64_t need = itemsize;  // bytes; checked for overflow so a hostile shape cannot wrap the bound
  bool overflow = false;
  for (int64_t d : a.shape) overflow |= __builtin_mul_overflow(need, static_cast<uint64_t>(d), &need);
  const uint64_t have = file.size() - data_start, numel = need / itemsize;
  if (overflow || need > have)
    user_fail(path, ": truncated data: shape ", shape_tuple(a.shape), " ", a.dtype, " needs ",
              overflow ? std::string("over 2^64") : std::to_string(need), " bytes, file holds ", have);
  const uint8_t* data = file.data() + data_start;
  if (itemsize == 4) {
    a.f32.resize(numel);
    if (numel) std::memcpy(a.f32.data(), data, need);
  } else {
    a.u8.assign(data, data + need);
  }
  return a;
}

Tensor npy_images_f32(const std::string& path) {
  NpyArray a = read_npy(path);
  const auto& s = a.shape;
  const bool nchw = s.size() == 4 && s[1] == 1, nhw = s.size() == 3;
  if (!nchw && !nhw) user_fail(path, ": expected images [N,1,H,W] or [N,H,W], found shape ", shape_tuple(s));
  Tensor t;
  t.shape = {s[0], 1, s[nchw ? 2 : 1], s[nchw ? 3 : 2]};
  if (a.dtype == "<f4") {
    t.data = std::move(a.f32);
  } else {
    t.data.resize(a.u8.size());
    for (size_t k = 0; k < a.u8.size(); ++k) t.data[k] = (static_cast<float>(a.u8[k]) - 127.5f) / 127.5f;
  }
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  EBM_CHECK(t.numel() == Tensor::numel_of(t.shape), "tensor data size does not match its shape " + shape_str(t.shape));
  std::string header = npy_header_dict("<f4", t.shape);
  // Pad with spaces and end in '\n' so the data starts 64-byte aligned (what numpy writes).
  const bool v1 = header.size() + 1 + 10 + 64 <= 65535;
  const size_t preamble = v1 ? 10 : 12;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header += '\n';

  std::string pre(kMagic, kMagicLen);
  pre += static_cast<char>(v1 ? 1 : 2);
  pre += '\0';
  const uint32_t hlen = static_cast<uint32_t>(header.size());
  for (size_t k = 0; k < (v1 ? 2u : 4u); ++k) pre += static_cast<char>((hlen >> (8 * k)) & 0xff);

  write_file_atomic(path, [&](std::ofstream& f) {
    f.write(pre.data(), static_cast<std::streamsize>(pre.size()));
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(reinterpret_cast<const char*>(t.ptr()), static_cast<std::streamsize>(t.data.size() * sizeof(float)));
  });
}

}  // namespace ebm
