#include "host/io/dataset.hpp"

#include <algorithm>
#include <filesystem>

#include "engine/error.hpp"
#include "host/io/crc32.hpp"
#include "host/io/idx.hpp"

namespace ebm {
namespace {

namespace fs = std::filesystem;

// <dir>/<stem> or <dir>/<stem>.gz, whichever exists first; "" when neither does.
std::string find_idx(const std::string& dir, const std::string& stem) {
  for (const std::string& name : {stem, stem + ".gz"}) {
    fs::path p = fs::path(dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

void check_fits(const IdxImages& im, const std::string& path, int pad_to) {
  if (im.n == 0) user_fail(path, ": holds no images");
  if (pad_to < im.h || pad_to < im.w)
    user_fail("data.pad_to = ", pad_to, " is smaller than the ", im.h, "x", im.w, " images in ", path);
}

}  // namespace

Tensor preprocess_images(const uint8_t* u8, int64_t n, int h, int w, int pad_to) {
  if (n < 0 || h < 1 || w < 1) user_fail("preprocess_images: bad image set shape [", n, ",", h, ",", w, "]");
  if (pad_to < h || pad_to < w) user_fail("data.pad_to = ", pad_to, " is smaller than the ", h, "x", w, " images");
  const int64_t P = pad_to;
  const int top = (pad_to - h) / 2, left = (pad_to - w) / 2;  // an odd remainder goes bottom/right
  float lut[256];
  for (int u = 0; u < 256; ++u) lut[u] = (float(u) - 127.5f) / 127.5f;

  Tensor out({n, 1, P, P}, -1.f);  // -1 everywhere = the padding
  for (int64_t i = 0; i < n; ++i)
    for (int r = 0; r < h; ++r) {
      const uint8_t* src = u8 + (i * h + r) * w;              // u8[i, r, :]
      float* dst = out.ptr() + (i * P + r + top) * P + left;  // out[i, 0, r+top, left:]
      for (int c = 0; c < w; ++c) dst[c] = lut[src[c]];
    }
  return out;
}

uint64_t dataset_fingerprint(const Tensor& images) {
  const uint32_t crc = crc32_ieee(images.ptr(), images.data.size() * sizeof(float));
  const uint64_t n = images.shape.empty() ? 0 : uint64_t(images.shape[0]);
  return uint64_t(crc) << 32 | (n & 0xffffffffu);
}

Tensor load_idx_images(const std::string& path, int pad_to) {
  IdxImages im = read_idx_images(path);
  check_fits(im, path, pad_to);
  return preprocess_images(im.pixels.data(), im.n, im.h, im.w, pad_to);
}

Dataset load_test_split(const DataConfig& cfg) {
  Dataset ds;
  ds.test_path = find_idx(cfg.dir, "t10k-images-idx3-ubyte");
  if (ds.test_path.empty())
    user_fail("'", cfg.dir, "' lacks t10k-images-idx3-ubyte[.gz]; fetch the data with: scripts/get_data.sh ",
              cfg.dataset, " ", cfg.dir);
  IdxImages test = read_idx_images(ds.test_path, find_idx(cfg.dir, "t10k-labels-idx1-ubyte"));
  check_fits(test, ds.test_path, cfg.pad_to);
  ds.test = preprocess_images(test.pixels.data(), test.n, test.h, test.w, cfg.pad_to);
  ds.test_labels = std::move(test.labels);
  return ds;
}

Dataset load_dataset(const DataConfig& cfg) {
  const std::string fetch = "scripts/get_data.sh " + cfg.dataset + " " + cfg.dir;
  const std::string looked = "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]";
  std::error_code ec;
  if (fs::exists(cfg.dir, ec) && !fs::is_directory(cfg.dir, ec))
    user_fail("data.dir '", cfg.dir, "' is a file, not a folder: give the folder that holds ", looked);
  if (!fs::is_directory(cfg.dir, ec))
    user_fail("data.dir '", cfg.dir, "' not found (looked for ", looked, " there); fetch the data with: ", fetch);
  if (cfg.limit < 0) user_fail("data.limit = ", cfg.limit, " must be >= 0 (0 = all images)");

  Dataset ds;
  ds.train_path = find_idx(cfg.dir, "train-images-idx3-ubyte");
  ds.test_path = find_idx(cfg.dir, "t10k-images-idx3-ubyte");
  if (ds.train_path.empty() || ds.test_path.empty())
    user_fail("data.dir '", cfg.dir, "' lacks ", ds.train_path.empty() ? "train-images-idx3-ubyte[.gz]" : "",
              ds.train_path.empty() && ds.test_path.empty() ? " and " : "",
              ds.test_path.empty() ? "t10k-images-idx3-ubyte[.gz]" : "", "; fetch the data with: ", fetch);

  IdxImages train = read_idx_images(ds.train_path, find_idx(cfg.dir, "train-labels-idx1-ubyte"));
  IdxImages test = read_idx_images(ds.test_path, find_idx(cfg.dir, "t10k-labels-idx1-ubyte"));
  check_fits(train, ds.train_path, cfg.pad_to);
  check_fits(test, ds.test_path, cfg.pad_to);
  if (train.h != test.h || train.w != test.w)
    user_fail("image size mismatch: ", ds.train_path, " holds ", train.h, "x", train.w, " images but ", ds.test_path,
              " holds ", test.h, "x", test.w);

  // Only the first `limit` training images are converted: a small run never pays for the full set.
  const int64_t n_train = cfg.limit > 0 ? std::min(cfg.limit, train.n) : train.n;
  ds.train = preprocess_images(train.pixels.data(), n_train, train.h, train.w, cfg.pad_to);
  ds.test = preprocess_images(test.pixels.data(), test.n, test.h, test.w, cfg.pad_to);
  if (!train.labels.empty()) ds.train_labels.assign(train.labels.begin(), train.labels.begin() + n_train);
  ds.test_labels = std::move(test.labels);
  return ds;
}

}  // namespace ebm
