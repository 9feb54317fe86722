#include "host/io/idx.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#if EBM_HAVE_ZLIB
#include <zlib.h>
#endif

#include "engine/error.hpp"
#include "host/io/input_file.hpp"

namespace ebm {
namespace {

namespace fs = std::filesystem;

// zlib counts in uInt (32 bits): feed and drain it in chunks no larger than this.
constexpr size_t kZChunk = size_t{1} << 30;

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  require_regular_file(path, "an IDX file");
  std::ifstream f(path, std::ios::binary);
  if (!f) user_fail(path, ": cannot open: ", std::strerror(errno));
  std::vector<uint8_t> bytes(fs::file_size(path, ec));
  if (ec || !f.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size())))
    user_fail(path, ": read error: ", ec ? ec.message() : std::strerror(errno));
  return bytes;
}

// Deflate's largest compression ratio (a stream of one repeated byte): no gzip file of n bytes inflates
// to more than about 1032·n.
constexpr uint64_t kMaxDeflateRatio = 1032;

#if EBM_HAVE_ZLIB
// Inflates a gzip file (concatenated members allowed, as gzip(1) does), stopping once more than `limit`
// bytes have come out (then the result holds limit + 1 bytes, and no trailer was checked): what the IDX
// header promises, never the whole stream blindly — a small .gz can inflate to gigabytes. A stream that
// ends before its trailer is "truncated"; bad data or a bad CRC is "corrupt".
std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& in, uint64_t limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) user_fail(path, ": zlib inflateInit2 failed");
  std::vector<uint8_t> out(size_t(std::min<uint64_t>(limit + 1, std::max<size_t>(in.size() * 4, 1 << 16))));
  size_t in_pos = 0, out_len = 0;
  for (;;) {
    if (out_len > limit) break;
    if (zs.avail_in == 0 && in_pos < in.size()) {
      size_t n = std::min(in.size() - in_pos, kZChunk);
      zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
      zs.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    if (out_len == out.size()) out.resize(size_t(std::min<uint64_t>(limit + 1, uint64_t(out.size()) * 2)));
    size_t room = std::min(out.size() - out_len, kZChunk);
    zs.next_out = out.data() + out_len;
    zs.avail_out = static_cast<uInt>(room);
    int rc = inflate(&zs, Z_NO_FLUSH);
    out_len += room - zs.avail_out;
    bool input_done = zs.avail_in == 0 && in_pos == in.size();
    if (rc == Z_STREAM_END) {
      if (input_done) break;
      inflateReset(&zs);  // another gzip member follows
      continue;
    }
    if (rc == Z_OK) continue;
    std::string msg = zs.msg ? zs.msg : "zlib error " + std::to_string(rc);
    inflateEnd(&zs);
    if (rc == Z_BUF_ERROR && input_done)
      user_fail(path, ": truncated gzip stream (ends after ", out_len, " decompressed bytes)");
    user_fail(path, ": corrupt gzip stream (", msg, ")");
  }
  inflateEnd(&zs);
  out.resize(out_len);
  return out;
}
#else
// A build without zlib reads raw IDX only: a gzip file is one line naming it and what to do.
[[noreturn]] std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>&, uint64_t) {
  user_fail(path, ": is gzip-compressed, and this build has no zlib to read it: decompress it first (gunzip -k ",
            path, ") or rebuild with zlib (Debian: zlib1g-dev)");
}
#endif

const char* idx_type_name(uint8_t t) {
  switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
  }
}

std::string hex_byte(uint8_t b) {
  char s[8];
  std::snprintf(s, sizeof s, "0x%02X", b);
  return s;
}

// prod(dims), saturating at UINT64_MAX (four u32 dims can overflow 64 bits; such a file is truncated).
uint64_t dims_product(const std::vector<uint32_t>& dims) {
  uint64_t p = 1;
  for (uint32_t d : dims) {
    if (d != 0 && p > UINT64_MAX / d) return UINT64_MAX;
    p *= d;
  }
  return p;
}

}  // namespace

std::string idx_dims_str(const std::vector<uint32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(dims[i]);
  }
  return s;
}

IdxU8 read_idx_u8(const std::string& path) { return parse_idx_u8(read_file_bytes(path), path); }

bool gzip_available() {
#if EBM_HAVE_ZLIB
  return true;
#else
  return false;
#endif
}

namespace {

// The whole IDX file (header and data) as its header describes it: 4 + 4·ndims + prod(dims) bytes
// (saturating); 0 when the header is not all there or not an IDX header (the caller reports which).
uint64_t idx_size_from_header(const std::vector<uint8_t>& b) {
  if (b.size() < 4 || b[0] != 0 || b[1] != 0 || b[3] < 1 || b[3] > 4) return 0;
  const size_t header = 4 + 4 * size_t(b[3]);
  if (b.size() < header) return 0;
  std::vector<uint32_t> dims;
  for (size_t i = 4; i < header; i += 4)
    dims.push_back(uint32_t(b[i]) << 24 | uint32_t(b[i + 1]) << 16 | uint32_t(b[i + 2]) << 8 | b[i + 3]);
  const uint64_t data = dims_product(dims);
  return data > UINT64_MAX - header ? UINT64_MAX : header + data;
}

}  // namespace

IdxU8 parse_idx_u8(std::vector<uint8_t> b, const std::string& path) {
  const bool gz = b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b;
  if (gz) {
    // The header first (at most 20 bytes), then what it promises and one byte more, to tell trailing
    // garbage. A promise no gzip file of this size can keep is truncation, found without inflating.
    const std::vector<uint8_t> head = gunzip(path, b, 20);
    const uint64_t promised = idx_size_from_header(head);
    if (promised == 0) {
      b = head;
    } else {
      const uint64_t most = kMaxDeflateRatio * uint64_t(b.size()) + 1024;
      if (promised > most)
        user_fail(path, ": truncated: its header promises ", promised, " bytes, more than a ", b.size(),
                  "-byte gzip file can inflate to (deflate compresses at most ", kMaxDeflateRatio, ":1)");
      b = gunzip(path, b, promised);
    }
  }
  const char* what = gz ? "decompressed file has" : "file has";

  if (b.empty()) user_fail(path, gz ? ": decompresses to 0 bytes, not an IDX file" : ": is empty (0 bytes), not an IDX file");
  if (b.size() < 4) user_fail(path, ": truncated: ", what, " ", b.size(), " bytes, an IDX header needs at least 4");
  if (b[0] != 0 || b[1] != 0)
    user_fail(path, ": not an IDX file: bad magic ", hex_byte(b[0]), " ", hex_byte(b[1]),
              " (expected 0x00 0x00 <type> <ndims>)");
  if (b[2] != 0x08)
    user_fail(path, ": unsupported IDX element type ", hex_byte(b[2]), " (", idx_type_name(b[2]),
              "); only 0x08 (unsigned byte) is supported");
  const int ndims = b[3];
  if (ndims < 1 || ndims > 4) user_fail(path, ": bad IDX header: ndims = ", ndims, " (supported: 1..4)");
  const size_t header = 4 + 4 * size_t(ndims);
  if (b.size() < header)
    user_fail(path, ": truncated: header of ", ndims, " dims needs ", header, " bytes, ", what, " ", b.size());

  IdxU8 idx;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = &b[4 + 4 * i];  // big-endian u32
    idx.dims.push_back(uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]);
  }
  const uint64_t need = dims_product(idx.dims), have = b.size() - header;
  if (have < need)
    user_fail(path, ": truncated: header says ", idx_dims_str(idx.dims), " = ", need, " bytes of data, ", what, " ",
              have, " after the ", header, "-byte header");
  if (have > need && gz)  // inflating stopped one byte past what the header promised
    user_fail(path, ": trailing garbage: header says ", idx_dims_str(idx.dims), " = ", need,
              " bytes of data, the decompressed file has more after the ", header, "-byte header");
  if (have > need)
    user_fail(path, ": trailing garbage: header says ", idx_dims_str(idx.dims), " = ", need, " bytes of data, ", what,
              " ", have, " after the ", header, "-byte header (", have - need, " extra)");
  idx.data.assign(b.begin() + header, b.end());
  return idx;
}

void write_idx_u8(const std::string& path, const IdxU8& idx, bool gzip) {
  if (idx.dims.empty() || idx.dims.size() > 4)
    user_fail(path, ": cannot write an IDX file with ", idx.dims.size(), " dims (supported: 1..4)");
  if (dims_product(idx.dims) != idx.data.size())
    user_fail(path, ": cannot write IDX: dims ", idx_dims_str(idx.dims), " do not match ", idx.data.size(),
              " bytes of data");
  std::vector<uint8_t> header{0, 0, 0x08, uint8_t(idx.dims.size())};
  for (uint32_t d : idx.dims)
    for (int s = 24; s >= 0; s -= 8) header.push_back(uint8_t(d >> s));

  if (gzip) {
#if EBM_HAVE_ZLIB
    gzFile f = gzopen(path.c_str(), "wb");
    if (!f) user_fail(path, ": cannot open for writing: ", std::strerror(errno));
    bool ok = gzwrite(f, header.data(), unsigned(header.size())) == int(header.size());
    for (size_t pos = 0; ok && pos < idx.data.size(); pos += kZChunk) {
      unsigned n = unsigned(std::min(idx.data.size() - pos, kZChunk));
      ok = gzwrite(f, idx.data.data() + pos, n) == int(n);
    }
    if (gzclose(f) != Z_OK || !ok) user_fail(path, ": write error (gzip)");
    return;
#else
    user_fail(path, ": cannot write a gzip IDX file: this build has no zlib (rebuild with zlib, Debian: zlib1g-dev)");
#endif
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) user_fail(path, ": cannot open for writing: ", std::strerror(errno));
  f.write(reinterpret_cast<const char*>(header.data()), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(idx.data.data()), std::streamsize(idx.data.size()));
  f.close();
  if (!f) user_fail(path, ": write error: ", std::strerror(errno));
}

IdxImages read_idx_images(const std::string& images_path, const std::string& labels_path) {
  IdxU8 img = read_idx_u8(images_path);
  if (img.dims.size() != 3)
    user_fail(images_path, ": expected images with 3 dims [N,H,W], got ", img.dims.size(), " (",
              idx_dims_str(img.dims), ")");
  if (img.dims[1] > INT_MAX || img.dims[2] > INT_MAX)
    user_fail(images_path, ": image size ", img.dims[1], "x", img.dims[2], " is too large");
  IdxImages out;
  out.n = img.dims[0];
  out.h = int(img.dims[1]);
  out.w = int(img.dims[2]);
  out.pixels = std::move(img.data);
  if (labels_path.empty()) return out;

  IdxU8 lab = read_idx_u8(labels_path);
  if (lab.dims.size() != 1)
    user_fail(labels_path, ": expected labels with 1 dim [N], got ", lab.dims.size(), " (",
              idx_dims_str(lab.dims), ")");
  if (lab.dims[0] != out.n)
    user_fail("count mismatch: ", images_path, " has ", out.n, " images but ", labels_path, " has ", lab.dims[0],
              " labels");
  out.labels = std::move(lab.data);
  return out;
}

}  // namespace ebm
