// IDX reader/writer: round trips, and every broken file is a UserError naming the file and the problem.
#include <gtest/gtest.h>
#if EBM_HAVE_ZLIB
#include <zlib.h>
#endif

#include <filesystem>
#include <fstream>
#include <random>

#include "engine/error.hpp"
#include "host/io/idx.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

using test::expect_user_error;

using test::TempDir;

std::vector<uint8_t> file_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The gzip tests need zlib to make their files and to read them; a build without it skips them.
#define SKIP_WITHOUT_ZLIB() \
  if (!gzip_available()) GTEST_SKIP() << "built without zlib: gzip IDX files are refused (see GzipWithoutZlib)"

// Writes raw bytes as given (or gzip-compressed): for files the writer refuses to make.
void put_bytes(const std::string& p, const std::vector<uint8_t>& b, bool gzip = false) {
  if (gzip) {
#if EBM_HAVE_ZLIB
    gzFile f = gzopen(p.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, b.data(), unsigned(b.size())), int(b.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
#else
    FAIL() << "put_bytes: gzip needs zlib; the test should have skipped";
#endif
    return;
  }
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

IdxU8 random_idx(std::vector<uint32_t> dims, unsigned seed = 1) {
  IdxU8 idx{std::move(dims), {}};
  size_t n = 1;
  for (auto d : idx.dims) n *= d;
  std::mt19937 g(seed);
  for (size_t i = 0; i < n; ++i) idx.data.push_back(uint8_t(g()));
  return idx;
}


}  // namespace

TEST(Idx, RoundTripRawAndGzip) {
  TempDir dir;
  for (bool gz : {false, true})
    for (auto dims : std::vector<std::vector<uint32_t>>{{7}, {5, 4, 3}, {2, 3, 4, 5}, {0, 28, 28}}) {
      if (gz && !gzip_available()) continue;
      IdxU8 a = random_idx(dims);
      std::string p = dir / (idx_dims_str(dims) + (gz ? ".gz" : ""));
      write_idx_u8(p, a, gz);
      auto head = file_bytes(p);
      ASSERT_GE(head.size(), 2u);
      EXPECT_EQ(head[0] == 0x1f && head[1] == 0x8b, gz);
      IdxU8 b = read_idx_u8(p);
      EXPECT_EQ(b.dims, a.dims);
      EXPECT_EQ(b.data, a.data);
    }
}

TEST(Idx, HeaderIsBigEndian) {
  TempDir dir;
  write_idx_u8(dir / "x", IdxU8{{2, 258}, std::vector<uint8_t>(516, 9)}, false);
  auto b = file_bytes(dir / "x");
  std::vector<uint8_t> want{0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 1, 2};
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.begin() + 12), want);
  EXPECT_EQ(b.size(), 12u + 516u);
}

TEST(Idx, GzipDetectedByMagicNotName) {
  TempDir dir;
  IdxU8 a = random_idx({3, 4, 4});
  write_idx_u8(dir / "raw_with_suffix.gz", a, false);
  EXPECT_EQ(read_idx_u8(dir / "raw_with_suffix.gz").data, a.data);
  SKIP_WITHOUT_ZLIB();
  write_idx_u8(dir / "gz_without_suffix", a, true);
  EXPECT_EQ(read_idx_u8(dir / "gz_without_suffix").data, a.data);
}

TEST(Idx, GzipWithoutZlib) {
  // gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]), mtime=0): an IDX file of one byte, 7.
  const std::vector<uint8_t> gz{0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0xE0, 0x60, 0x64,
                                0x60, 0x60, 0x60, 0x64, 0x07, 0x00, 0x8E, 0x2D, 0xC5, 0x99, 0x09, 0x00, 0x00, 0x00};
  TempDir dir;
  put_bytes(dir / "one-idx1-ubyte.gz", gz);
  if (gzip_available()) {
    const IdxU8 one = read_idx_u8(dir / "one-idx1-ubyte.gz");
    EXPECT_EQ(one.dims, std::vector<uint32_t>{1});
    EXPECT_EQ(one.data, std::vector<uint8_t>{7});
    return;
  }
  // A build without zlib: one line naming the file, that it is gzip, that the build lacks zlib, and the fix.
  const std::string p = dir / "one-idx1-ubyte.gz";
  expect_user_error([&] { read_idx_u8(p); },
                    {p + ": is gzip-compressed, and this build has no zlib to read it", "gunzip -k " + p, "zlib1g-dev"});
  expect_user_error([&] { write_idx_u8(dir / "w.gz", IdxU8{{1}, {7}}, true); },
                    {dir / "w.gz", "cannot write a gzip IDX file: this build has no zlib"});
  write_idx_u8(dir / "w", IdxU8{{1}, {7}}, false);  // raw IDX works as ever
  EXPECT_EQ(read_idx_u8(dir / "w").data, std::vector<uint8_t>{7});
}

TEST(Idx, ConcatenatedGzipMembers) {
  SKIP_WITHOUT_ZLIB();
  TempDir dir;
  IdxU8 a = random_idx({4, 6});
  std::vector<uint8_t> raw{0, 0, 8, 2, 0, 0, 0, 4, 0, 0, 0, 6};
  raw.insert(raw.end(), a.data.begin(), a.data.end());
  put_bytes(dir / "m1", {raw.begin(), raw.begin() + 10}, true);
  put_bytes(dir / "m2", {raw.begin() + 10, raw.end()}, true);
  auto b = file_bytes(dir / "m1"), b2 = file_bytes(dir / "m2");
  b.insert(b.end(), b2.begin(), b2.end());
  put_bytes(dir / "both.gz", b);
  EXPECT_EQ(read_idx_u8(dir / "both.gz").data, a.data);
}

TEST(Idx, MissingFile) {
  TempDir dir;
  expect_user_error([&] { read_idx_u8(dir / "nope-idx3-ubyte.gz"); }, {dir / "nope-idx3-ubyte.gz", ": no such file"});
  expect_user_error([&] { read_idx_u8(dir.path.string()); }, {dir.path.string(), "directory"});
}

TEST(Idx, WrongMagic) {
  TempDir dir;
  put_bytes(dir / "bad", {0x12, 0x34, 8, 1, 0, 0, 0, 1, 7});
  expect_user_error([&] { read_idx_u8(dir / "bad"); }, {dir / "bad", "bad magic", "0x12 0x34"});
  SKIP_WITHOUT_ZLIB();
  put_bytes(dir / "bad.gz", {0x12, 0x34, 8, 1, 0, 0, 0, 1, 7}, true);
  expect_user_error([&] { read_idx_u8(dir / "bad.gz"); }, {dir / "bad.gz", "bad magic"});
}

TEST(Idx, UnsupportedType) {
  TempDir dir;
  put_bytes(dir / "floats", {0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0});
  expect_user_error([&] { read_idx_u8(dir / "floats"); }, {dir / "floats", "unsupported", "0x0D", "float32"});
}

TEST(Idx, BadNdims) {
  TempDir dir;
  put_bytes(dir / "zero", {0, 0, 8, 0});
  expect_user_error([&] { read_idx_u8(dir / "zero"); }, {dir / "zero", "ndims = 0"});
  put_bytes(dir / "five", std::vector<uint8_t>{0, 0, 8, 5});
  expect_user_error([&] { read_idx_u8(dir / "five"); }, {dir / "five", "ndims = 5"});
}

TEST(Idx, TruncatedRaw) {
  TempDir dir;
  write_idx_u8(dir / "t", random_idx({10, 28, 28}), false);
  auto b = file_bytes(dir / "t");
  put_bytes(dir / "t", {b.begin(), b.end() - 100});
  expect_user_error([&] { read_idx_u8(dir / "t"); }, {dir / "t", "truncated", "10x28x28 = 7840 bytes", "file has 7740"});
  put_bytes(dir / "h", {b.begin(), b.begin() + 9});  // cut inside the dims
  expect_user_error([&] { read_idx_u8(dir / "h"); }, {dir / "h", "truncated", "header"});
  put_bytes(dir / "tiny", {0, 0});
  expect_user_error([&] { read_idx_u8(dir / "tiny"); }, {dir / "tiny", "truncated"});
  put_bytes(dir / "empty", {});
  expect_user_error([&] { read_idx_u8(dir / "empty"); }, {dir / "empty" + ": is empty (0 bytes), not an IDX file"});
  SKIP_WITHOUT_ZLIB();
  put_bytes(dir / "empty.gz", {}, true);  // a valid gzip stream of nothing
  expect_user_error([&] { read_idx_u8(dir / "empty.gz"); }, {dir / "empty.gz" + ": decompresses to 0 bytes, not an IDX file"});
}

TEST(Idx, TruncatedGzip) {
  SKIP_WITHOUT_ZLIB();
  TempDir dir;
  write_idx_u8(dir / "t.gz", random_idx({10, 28, 28}), true);
  auto b = file_bytes(dir / "t.gz");
  put_bytes(dir / "t.gz", {b.begin(), b.begin() + b.size() / 2});  // the stream stops mid-way
  expect_user_error([&] { read_idx_u8(dir / "t.gz"); }, {dir / "t.gz", "truncated gzip"});
  // A complete gzip stream holding a truncated IDX file.
  std::vector<uint8_t> raw{0, 0, 8, 1, 0, 0, 0, 9, 1, 2, 3};
  put_bytes(dir / "short.gz", raw, true);
  expect_user_error([&] { read_idx_u8(dir / "short.gz"); }, {dir / "short.gz", "truncated", "decompressed file has 3"});
}

TEST(Idx, TrailingBytes) {
  TempDir dir;
  std::vector<uint8_t> raw{0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5};
  put_bytes(dir / "long", raw);
  expect_user_error([&] { read_idx_u8(dir / "long"); }, {dir / "long", "trailing garbage", "2 extra"});
  SKIP_WITHOUT_ZLIB();
  put_bytes(dir / "long.gz", raw, true);  // inflating stops one byte past the promised 3: the count is unknown
  expect_user_error([&] { read_idx_u8(dir / "long.gz"); },
                    {dir / "long.gz", "trailing garbage", "the decompressed file has more after the 8-byte header"});
}

TEST(Idx, GzipBombsAreNotInflated) {
  // A header promising 3 bytes, then 64 MB of zeros that compress to about 64 kB: reading stops one byte
  // past the promise instead of inflating it all.
  SKIP_WITHOUT_ZLIB();
  TempDir dir;
  std::vector<uint8_t> bomb{0, 0, 8, 1, 0, 0, 0, 3};
  bomb.resize(bomb.size() + (size_t(64) << 20), 0);
  put_bytes(dir / "bomb.gz", bomb, true);
  ASSERT_LT(file_bytes(dir / "bomb.gz").size(), size_t(1) << 20);
  expect_user_error([&] { read_idx_u8(dir / "bomb.gz"); }, {dir / "bomb.gz", "trailing garbage"});
  // A header promising more than any gzip file of this size can hold: truncated, without inflating.
  std::vector<uint8_t> huge{0, 0, 8, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 2, 3};  // 65536^2·256 bytes
  put_bytes(dir / "huge.gz", huge, true);
  expect_user_error([&] { read_idx_u8(dir / "huge.gz"); },
                    {dir / "huge.gz", "truncated: its header promises 1099511627792 bytes", "deflate compresses at most"});
}

TEST(Idx, CorruptGzip) {
  SKIP_WITHOUT_ZLIB();
  TempDir dir;
  write_idx_u8(dir / "c.gz", random_idx({10, 28, 28}), true);
  auto b = file_bytes(dir / "c.gz");
  auto bad_crc = b;
  bad_crc[bad_crc.size() - 8] ^= 0xFF;  // the trailer's CRC-32
  put_bytes(dir / "crc.gz", bad_crc);
  expect_user_error([&] { read_idx_u8(dir / "crc.gz"); }, {dir / "crc.gz", "corrupt gzip"});
  auto bad_method = b;
  bad_method[2] = 7;  // compression method must be 8 (deflate)
  put_bytes(dir / "method.gz", bad_method);
  expect_user_error([&] { read_idx_u8(dir / "method.gz"); }, {dir / "method.gz", "corrupt gzip"});
  auto garbage = b;
  garbage.insert(garbage.end(), {'j', 'u', 'n', 'k'});  // not a second gzip member
  put_bytes(dir / "junk.gz", garbage);
  expect_user_error([&] { read_idx_u8(dir / "junk.gz"); }, {dir / "junk.gz", "corrupt gzip"});
}

TEST(Idx, WriterRejectsBadDims) {
  TempDir dir;
  expect_user_error([&] { write_idx_u8(dir / "w", IdxU8{{2, 2}, {1, 2, 3}}, false); }, {dir / "w", "do not match"});
  expect_user_error([&] { write_idx_u8(dir / "w", IdxU8{{}, {}}, false); }, {dir / "w", "0 dims"});
}

TEST(Idx, ImagesAndLabels) {
  TempDir dir;
  IdxU8 img = random_idx({5, 4, 3});
  write_idx_u8(dir / "img.gz", img, gzip_available());
  write_idx_u8(dir / "lab", IdxU8{{5}, {0, 1, 2, 3, 4}}, false);
  IdxImages im = read_idx_images(dir / "img.gz", dir / "lab");
  EXPECT_EQ(im.n, 5);
  EXPECT_EQ(im.h, 4);
  EXPECT_EQ(im.w, 3);
  EXPECT_EQ(im.pixels, img.data);
  EXPECT_EQ(im.labels, (std::vector<uint8_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(read_idx_images(dir / "img.gz").labels.empty());
}

TEST(Idx, ImagesLabelsCountMismatch) {
  TempDir dir;
  write_idx_u8(dir / "imgs-idx3", random_idx({5, 4, 4}), false);
  write_idx_u8(dir / "labels-idx1", random_idx({6}), false);
  expect_user_error([&] { read_idx_images(dir / "imgs-idx3", dir / "labels-idx1"); },
                    {dir / "imgs-idx3", dir / "labels-idx1", "mismatch", "5 images", "6 labels"});
}

TEST(Idx, ImagesWrongRank) {
  TempDir dir;
  write_idx_u8(dir / "flat", random_idx({5, 16}), false);
  expect_user_error([&] { read_idx_images(dir / "flat"); }, {dir / "flat", "3 dims", "5x16"});
  write_idx_u8(dir / "imgs", random_idx({5, 4, 4}), false);
  write_idx_u8(dir / "lab2d", random_idx({5, 1}), false);
  expect_user_error([&] { read_idx_images(dir / "imgs", dir / "lab2d"); }, {dir / "lab2d", "1 dim"});
}
