#include "host/scoring.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "engine/error.hpp"
#include "host/dataset.hpp"
#include "host/idx.hpp"
#include "host/npy.hpp"

namespace fs = std::filesystem;

namespace ebm {

double auroc(const std::vector<float>& positives, const std::vector<float>& negatives) {
  if (positives.empty() || negatives.empty())
    user_fail("AUROC needs both sets non-empty (got ", positives.size(), " and ", negatives.size(), " scores)");
  struct Item {
    float v;
    bool pos;
  };
  std::vector<Item> all;
  all.reserve(positives.size() + negatives.size());
  for (float v : positives) all.push_back({v, true});
  for (float v : negatives) all.push_back({v, false});
  for (const Item& it : all)
    if (std::isnan(it.v)) user_fail("AUROC: a score is NaN (the model's energies are not finite)");
  std::sort(all.begin(), all.end(), [](const Item& a, const Item& b) { return a.v < b.v; });

  // Sum of the positives' ranks (1-based), each run of equal values taking its midrank.
  double rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    size_t pos_in_run = 0;
    while (j < all.size() && all[j].v == all[i].v) pos_in_run += all[j++].pos;
    const double midrank = 0.5 * (double(i + 1) + double(j));  // ranks i+1 .. j
    rank_sum += midrank * double(pos_in_run);
    i = j;
  }
  const double p = double(positives.size()), n = double(negatives.size());
  const double u = rank_sum - p * (p + 1) / 2;  // pairs (pos, neg) with pos > neg, ties ½
  return u / (p * n);
}

Tensor pad_images(const Tensor& x, int pad_to) {
  EBM_CHECK(x.shape.size() == 4 && x.shape[1] == 1, "pad_images: expects [N,1,h,w], got " + shape_str(x.shape));
  const int64_t n = x.shape[0], h = x.shape[2], w = x.shape[3], P = pad_to;
  EBM_CHECK(h <= P && w <= P, "pad_images: images larger than pad_to");
  const int64_t top = (P - h) / 2, left = (P - w) / 2;  // as preprocess_images: odd remainder bottom/right
  Tensor out({n, 1, P, P}, -1.f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < h; ++r)
      std::copy_n(x.ptr() + (i * h + r) * w, w, out.ptr() + (i * P + r + top) * P + left);
  return out;
}

namespace {

bool has_npy_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[6] = {};
  f.read(m, 6);
  return f.gcount() == 6 && std::memcmp(m, "\x93NUMPY", 6) == 0;
}

void check_fits(const std::string& path, int64_t n, int64_t h, int64_t w, const NetSpec& net) {
  if (n == 0) user_fail(path, ": holds no images");
  if (h > net.in_h || w > net.in_w)
    user_fail(path, ": images are ", h, "x", w, " but the checkpoint's network takes ", net.in_h, "x", net.in_w,
              " (smaller images are padded with -1 as in training; larger ones are not cropped)");
}

}  // namespace

Tensor load_images_for_net(const std::string& path, const NetSpec& net) {
  std::error_code ec;
  if (!fs::exists(path, ec)) user_fail(path, ": no such file");
  if (fs::is_directory(path, ec)) user_fail(path, ": is a directory, expected an images file (.npy or IDX)");
  if (net.in_c != 1) user_fail(path, ": the checkpoint's network takes ", net.in_c, " channels; image files hold 1");
  if (net.in_h != net.in_w) user_fail(path, ": only square network inputs are supported");

  if (!has_npy_magic(path)) {
    // IDX (raw or gzip): u8 pixels, preprocessed exactly as the training set is.
    IdxImages im = read_idx_images(path);
    check_fits(path, im.n, im.h, im.w, net);
    return preprocess_images(im.pixels.data(), im.n, im.h, im.w, net.in_h);
  }
  NpyArray a = read_npy(path);
  const auto& s = a.shape;
  const bool nchw = s.size() == 4 && s[1] == 1, nhw = s.size() == 3;
  if (!nchw && !nhw) user_fail(path, ": expected images [N,1,H,W] or [N,H,W], found shape ", shape_str(s));
  const int64_t n = s[0], h = s[nchw ? 2 : 1], w = s[nchw ? 3 : 2];
  check_fits(path, n, h, w, net);
  if (a.dtype == "|u1") return preprocess_images(a.u8.data(), n, int(h), int(w), net.in_h);
  Tensor x;
  x.shape = {n, 1, h, w};
  x.data = std::move(a.f32);
  {
    float lo = INFINITY, hi = -INFINITY;
    for (float v : x.data) {
      if (std::isnan(v)) user_fail(path, ": holds NaN pixels");
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    // 1e-3 of slack: files written through other tools' float round trips still pass.
    if (lo < -1.001f || hi > 1.001f) {
      char range[64];
      std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
      user_fail(path, ": float pixels span ", range, ", expected [-1,1] (the training scale (u - 127.5)/127.5; ",
                "or save uint8 pixels 0..255)");
    }
  }
  if (x.shape[2] == net.in_h && x.shape[3] == net.in_w) return x;
  return pad_images(x, net.in_h);
}

void write_energies(const std::string& path, const std::vector<float>& energy) {
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".npy") {
    Tensor t({int64_t(energy.size())});
    std::copy(energy.begin(), energy.end(), t.data.begin());
    write_npy(path, t);
    return;
  }
  if (ext != ".csv") user_fail(path, ": energies are written as .npy or .csv, not '", ext, "'");
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) user_fail("cannot write ", path, ": ", std::strerror(errno));
  bool ok = std::fprintf(f, "index,energy\n") > 0;
  for (size_t i = 0; i < energy.size() && ok; ++i) ok = std::fprintf(f, "%zu,%.9g\n", i, double(energy[i])) > 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    user_fail("cannot write ", path, ": ", std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) user_fail("cannot write ", path, ": ", ec.message());
}

std::vector<float> energies_from_f(const std::vector<float>& f) {
  std::vector<float> e(f.size());
  std::transform(f.begin(), f.end(), e.begin(), [](float v) { return -v; });
  return e;
}

EnergyStats energy_stats(const std::vector<float>& e) {
  EnergyStats s;
  s.count = e.size();
  if (e.empty()) return s;
  s.mean = std::accumulate(e.begin(), e.end(), 0.0) / double(e.size());
  const auto [lo, hi] = std::minmax_element(e.begin(), e.end());
  s.min = *lo, s.max = *hi;
  return s;
}

std::string data_label(const std::string& path) {
  const fs::path p(path);
  const std::string parent = p.parent_path().filename().string();
  return parent.empty() || parent == "." ? p.filename().string() : parent + "/" + p.filename().string();
}

}  // namespace ebm
