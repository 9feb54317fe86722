// Preprocessing (DESIGN §1: x = (u-127.5)/127.5, pad with -1) and load_dataset on small IDX sets
// written to a temp dir. Set EBM_DATA_DIR=data/mnist to also check a real fetched set.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string_view>

#if EBM_HAVE_ZLIB
#include <zlib.h>
#endif

#include "engine/error.hpp"
#include "host/io/crc32.hpp"
#include "host/io/dataset.hpp"
#include "host/io/idx.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

using test::TempDir;

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(g());
  return v;
}

// x[i,0,r,c] of a [N,1,P,P] tensor.
float at(const Tensor& t, int64_t i, int64_t r, int64_t c) {
  const int64_t P = t.dim(2);
  return t.data[size_t((i * P + r) * P + c)];
}

std::string error_of(const DataConfig& cfg) {
  try {
    load_dataset(cfg);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

// A small MNIST-like set in `dir`: train gzip with labels (raw under the .gz names in a build without zlib),
// test raw without labels.
void write_set(const TempDir& dir, uint32_t n_train, uint32_t n_test, uint32_t n_train_labels) {
  const bool gz = gzip_available();
  write_idx_u8(dir / "train-images-idx3-ubyte.gz", {{n_train, 28, 28}, random_bytes(n_train * 784, 1)}, gz);
  write_idx_u8(dir / "train-labels-idx1-ubyte.gz", {{n_train_labels}, random_bytes(n_train_labels, 2)}, gz);
  write_idx_u8(dir / "t10k-images-idx3-ubyte", {{n_test, 28, 28}, random_bytes(n_test * 784, 3)}, false);
}

}  // namespace

TEST(Preprocess, Values) {
  // The exact float expression of DESIGN §1, so the CPU and GPU paths can agree bit for bit.
  std::vector<uint8_t> u(28 * 28, 0);
  u[0] = 0;
  u[27] = 255;
  u[28 * 27] = 128;
  u[28 * 28 - 1] = 127;
  Tensor x = preprocess_images(u.data(), 1, 28, 28, 32);
  ASSERT_EQ(x.shape, (std::vector<int64_t>{1, 1, 32, 32}));
  EXPECT_EQ(at(x, 0, 2, 2), -1.f);
  EXPECT_EQ(at(x, 0, 2, 29), 1.f);
  EXPECT_EQ(at(x, 0, 29, 2), 0.5f / 127.5f);
  EXPECT_EQ(at(x, 0, 29, 29), -0.5f / 127.5f);
  for (float v : x.data) EXPECT_TRUE(v >= -1.f && v <= 1.f);
}

TEST(Preprocess, PaddingAndPlacement) {
  const int n = 3;
  auto u = random_bytes(n * 28 * 28, 7);
  Tensor x = preprocess_images(u.data(), n, 28, 28, 32);
  ASSERT_EQ(x.shape, (std::vector<int64_t>{n, 1, 32, 32}));
  for (int i = 0; i < n; ++i)
    for (int r = 0; r < 32; ++r)
      for (int c = 0; c < 32; ++c) {
        bool border = r < 2 || r >= 30 || c < 2 || c >= 30;
        float want = border ? -1.f : (float(u[(i * 28 + r - 2) * 28 + c - 2]) - 127.5f) / 127.5f;
        ASSERT_EQ(at(x, i, r, c), want) << "image " << i << " at (" << r << "," << c << ")";
      }
}

TEST(Preprocess, OddPaddingGoesBottomRight) {
  std::vector<uint8_t> u(2 * 3, 255);  // one 2x3 image
  Tensor x = preprocess_images(u.data(), 1, 2, 3, 6);
  // rows: 2 on top, 2 at the bottom; cols: 1 left, 2 right
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 6; ++c) EXPECT_EQ(at(x, 0, r, c), (r >= 2 && r < 4 && c >= 1 && c < 4) ? 1.f : -1.f);
  Tensor same = preprocess_images(u.data(), 1, 2, 3, 3);  // pad_to == w: the one spare row goes at the bottom
  EXPECT_EQ(at(same, 0, 1, 0), 1.f);
  EXPECT_EQ(at(same, 0, 2, 0), -1.f);
}

TEST(Preprocess, PadToTooSmall) {
  std::vector<uint8_t> u(28 * 28);
  EXPECT_THROW(preprocess_images(u.data(), 1, 28, 28, 27), UserError);
}

TEST(Dataset, LoadsWithLimit) {
  TempDir dir;
  write_set(dir, 10, 4, 10);
  DataConfig cfg;
  cfg.dir = dir.path.string();
  cfg.limit = 6;
  Dataset ds = load_dataset(cfg);
  EXPECT_EQ(ds.train.shape, (std::vector<int64_t>{6, 1, 32, 32}));
  EXPECT_EQ(ds.test.shape, (std::vector<int64_t>{4, 1, 32, 32}));
  auto labels = random_bytes(10, 2);
  EXPECT_EQ(ds.train_labels, std::vector<uint8_t>(labels.begin(), labels.begin() + 6));
  EXPECT_TRUE(ds.test_labels.empty());
  EXPECT_EQ(ds.train_path, dir / "train-images-idx3-ubyte.gz");
  EXPECT_EQ(ds.test_path, dir / "t10k-images-idx3-ubyte");
  // The first images are kept, in order: train[5] pixel (0,0) is byte 5*784 of the file.
  auto u = random_bytes(10 * 784, 1);
  EXPECT_EQ(at(ds.train, 5, 2, 2), (float(u[5 * 784]) - 127.5f) / 127.5f);

  cfg.limit = 0;  // all
  EXPECT_EQ(load_dataset(cfg).train.dim(0), 10);
  cfg.limit = 1000;  // more than there is: all
  EXPECT_EQ(load_dataset(cfg).train.dim(0), 10);
  cfg.pad_to = 28;  // no padding
  EXPECT_EQ(load_dataset(cfg).train.shape, (std::vector<int64_t>{10, 1, 28, 28}));
}

// The fingerprint a checkpoint records of its training set is zlib's CRC-32 where the build has zlib and a
// table-driven copy where it does not: both must give the same values, or a checkpoint written by one
// build would be refused ("other data") by the other.
TEST(Crc32, KnownValues) {
  for (auto crc : {crc32_ieee, crc32_ieee_table}) {
    EXPECT_EQ(crc("", 0, 0), 0u);
    EXPECT_EQ(crc("123456789", 9, 0), 0xCBF43926u);  // the CRC-32 check value
    const std::string_view fox = "The quick brown fox jumps over the lazy dog";
    EXPECT_EQ(crc(fox.data(), fox.size(), 0), 0x414FA339u);
    // Continuing from a previous value is the CRC of the concatenation.
    EXPECT_EQ(crc(fox.data() + 10, fox.size() - 10, crc(fox.data(), 10, 0)), 0x414FA339u);
  }
}

TEST(Crc32, TableMatchesZlib) {
#if EBM_HAVE_ZLIB
  const std::vector<uint8_t> bytes = random_bytes(1 << 20, 7);
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{255}, size_t{4097}, bytes.size()}) {
    const uint32_t zlib = uint32_t(::crc32(0L, bytes.data(), uInt(n)));
    EXPECT_EQ(crc32_ieee_table(bytes.data(), n), zlib) << n << " bytes";
    EXPECT_EQ(crc32_ieee(bytes.data(), n), zlib) << n << " bytes";
  }
#else
  GTEST_SKIP() << "built without zlib: nothing to compare the table-driven CRC-32 with";
#endif
}

TEST(Dataset, FingerprintIsTheSameWithOrWithoutZlib) {
  // float32 bytes of these 8 values, CRC-32 0xC59533A0 (Python: zlib.crc32(struct.pack('<8f', ...))),
  // in the high half; the image count, 2, in the low half.
  Tensor t({2, 1, 2, 2});
  t.data = {-1.f, -0.5f, 0.f, 0.5f, 1.f, 0.25f, -0.25f, 0.75f};
  EXPECT_EQ(dataset_fingerprint(t), 0xC59533A000000002ull);
}

TEST(Dataset, MissingDirSaysHowToFetch) {
  TempDir dir;
  DataConfig cfg;
  cfg.dataset = "fashion-mnist";
  cfg.dir = dir / "nowhere";
  std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("scripts/get_data.sh fashion-mnist " + cfg.dir), std::string::npos) << msg;
  EXPECT_NE(msg.find("train-images-idx3-ubyte"), std::string::npos) << msg;
}

TEST(Dataset, MissingFileSaysHowToFetch) {
  TempDir dir;
  write_idx_u8(dir / "train-images-idx3-ubyte", {{2, 28, 28}, random_bytes(2 * 784, 1)}, false);
  DataConfig cfg;
  cfg.dir = dir.path.string();
  std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("t10k-images-idx3-ubyte"), std::string::npos) << msg;
  EXPECT_NE(msg.find("scripts/get_data.sh mnist"), std::string::npos) << msg;
}

TEST(Dataset, LabelCountMismatch) {
  TempDir dir;
  write_set(dir, 10, 4, 9);
  DataConfig cfg;
  cfg.dir = dir.path.string();
  std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train-labels-idx1-ubyte.gz"), std::string::npos) << msg;
}

TEST(Dataset, PadToSmallerThanImages) {
  TempDir dir;
  write_set(dir, 2, 2, 2);
  DataConfig cfg;
  cfg.dir = dir.path.string();
  cfg.pad_to = 20;
  std::string msg = error_of(cfg);
  EXPECT_NE(msg.find("data.pad_to = 20"), std::string::npos) << msg;
}

TEST(Dataset, RealDataIfPresent) {
  const char* d = std::getenv("EBM_DATA_DIR");
  if (!d) GTEST_SKIP() << "set EBM_DATA_DIR (e.g. data/mnist) to check a fetched data set";
  DataConfig cfg;
  cfg.dir = d;
  Dataset ds = load_dataset(cfg);
  EXPECT_GT(ds.train.dim(0), 0);
  EXPECT_GT(ds.test.dim(0), 0);
  EXPECT_EQ(ds.train.dim(2), 32);
  EXPECT_EQ(ds.train_labels.size(), size_t(ds.train.dim(0)));
  EXPECT_EQ(ds.test_labels.size(), size_t(ds.test.dim(0)));
  double mean = 0;
  for (float v : ds.train.data) mean += v;
  mean /= double(ds.train.numel());
  std::printf("%s: train %s test %s, mean %.4f\n", d, shape_str(ds.train.shape).c_str(),
              shape_str(ds.test.shape).c_str(), mean);
  EXPECT_LT(mean, -0.3);  // mostly black background, as MNIST and Fashion-MNIST are
}
