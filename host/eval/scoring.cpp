#include "host/eval/scoring.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "engine/error.hpp"
#include "host/io/input_file.hpp"
#include "host/io/atomic_file.hpp"
#include "host/io/dataset.hpp"
#include "host/io/idx.hpp"
#include "host/io/npy.hpp"
#include "host/io/output_files.hpp"

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

// The first `n` bytes of the file (fewer when it is shorter).
std::string first_bytes(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) user_fail(path, ": cannot open: ", std::strerror(errno));
  std::string b(n, '\0');
  f.read(b.data(), std::streamsize(n));
  b.resize(size_t(f.gcount()));
  return b;
}

std::string hex_bytes(const std::string& b) {
  std::string s;
  char buf[4];
  for (unsigned char c : b) {
    std::snprintf(buf, sizeof buf, "%02X", c);
    if (!s.empty()) s += ' ';
    s += buf;
  }
  return s;
}

void check_fits(const std::string& path, int64_t n, int64_t h, int64_t w, const NetSpec& net, const std::string& whose) {
  if (n == 0) user_fail(path, ": holds no images");
  if (h < 1 || w < 1) user_fail(path, ": holds images of ", h, "x", w, " pixels (each side must be at least 1)");
  if (h > net.in_h || w > net.in_w)
    user_fail(path, ": images are ", h, "x", w, " but ", whose, " takes ", net.in_h, "x", net.in_w,
              " (smaller images are padded with -1 as in training; larger ones are not cropped)");
}

}  // namespace

Tensor load_images_for_net(const std::string& path, const NetSpec& net, std::vector<std::string>& warnings,
                           const std::string& whose) {
  std::error_code ec;
  require_regular_file(path, "an images file (.npy or IDX)");
  if (net.in_c != 1) user_fail(path, ": ", whose, " takes ", net.in_c, " channels; image files hold 1");
  if (net.in_h != net.in_w) user_fail(path, ": only square network inputs are supported");

  // The format is told by the magic, not the name (MNIST's files have none); but a file named .npy
  // without numpy's magic is a broken .npy, not an IDX file, and is reported as such.
  const std::string head = first_bytes(path, 6);
  if (head.empty()) user_fail(path, ": is empty (0 bytes), expected images (.npy or IDX)");
  const bool npy = head == std::string("\x93NUMPY", 6);
  if (!npy && lower_extension(path) == ".npy")
    user_fail(path, ": not a .npy file (it starts with bytes ", hex_bytes(head), ", not \\x93NUMPY)");
  if (!npy) {
    // IDX (raw or gzip): u8 pixels, preprocessed exactly as the training set is.
    IdxImages im = read_idx_images(path);
    check_fits(path, im.n, im.h, im.w, net, whose);
    return preprocess_images(im.pixels.data(), im.n, im.h, im.w, net.in_h);
  }
  NpyArray a = read_npy(path);
  return images_for_net(path, a.shape, a.dtype == "|u1" ? a.u8.data() : nullptr, std::move(a.f32), net, warnings,
                        whose);
}

Tensor images_for_net(const std::string& what, const std::vector<int64_t>& s, const uint8_t* u8, std::vector<float> f32,
                      const NetSpec& net, std::vector<std::string>& warnings, const std::string& whose) {
  const std::string& path = what;
  if (net.in_c != 1) user_fail(path, ": ", whose, " takes ", net.in_c, " channels; these images have 1");
  if (net.in_h != net.in_w) user_fail(path, ": only square network inputs are supported");
  const bool nchw = s.size() == 4 && s[1] == 1, nhw = s.size() == 3;
  if (!nchw && !nhw) user_fail(path, ": expected images [N,1,H,W] or [N,H,W], found shape ", shape_str(s));
  const int64_t n = s[0], h = s[nchw ? 2 : 1], w = s[nchw ? 3 : 2];
  check_fits(path, n, h, w, net, whose);
  if (u8) return preprocess_images(u8, n, int(h), int(w), net.in_h);
  Tensor x;
  x.shape = {n, 1, h, w};
  x.data = std::move(f32);
  EBM_CHECK(x.numel() == n * h * w, "images_for_net: the values do not fill the shape");
  float lo = INFINITY, hi = -INFINITY;
  for (float v : x.data) {
    if (std::isnan(v)) user_fail(path, ": holds NaN pixels");
    lo = std::min(lo, v), hi = std::max(hi, v);
  }
  char range[64];
  std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
  // 1e-3 of slack: files written through other tools' float round trips still pass.
  if (lo < -1.001f || hi > 1.001f)
    user_fail(path, ": float pixels span ", range, ", expected [-1,1] (the training scale (u - 127.5)/127.5; ",
              "or give uint8 pixels 0..255)");
  // In range, but the usual slip: images scaled to [0,1] (x / 255) rather than [-1,1]. The energies of
  // such images look plausible and mean nothing, so say it; a set of all-light images is the rare case
  // where this is a false alarm.
  if (lo >= 0)
    warnings.push_back(path + ": float pixels span " + range + " and never go below 0: the network was trained on [-1,1] "
                       "(background -1); if these images are scaled to [0,1], use 2x - 1, or what the network says of them "
                       "(energies, classes) means nothing");
  if (x.shape[2] == net.in_h && x.shape[3] == net.in_w) return x;
  return pad_images(x, net.in_h);
}

std::string non_finite_energies(const std::vector<float>& energy, const std::string& what) {
  const size_t bad = size_t(std::count_if(energy.begin(), energy.end(), [](float e) { return !std::isfinite(e); }));
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(energy.size()) + " energies of " + what +
         " are not finite (NaN or inf): the checkpoint may have diverged";
}

void write_energies(const std::string& path, const std::vector<float>& energy) {
  const std::string ext = lower_extension(path);
  if (ext == ".npy") {
    Tensor t({int64_t(energy.size())});
    std::copy(energy.begin(), energy.end(), t.data.begin());
    write_npy(path, t);
    return;
  }
  if (ext != ".csv")
    user_fail(path, ": energies are written as .npy or .csv, not '", fs::path(path).extension().string(), "'");
  write_file_atomic(path, [&](std::ofstream& f) {
    f << "index,energy\n";
    char row[64];
    for (size_t i = 0; i < energy.size(); ++i) {
      std::snprintf(row, sizeof row, "%zu,%.9g\n", i, double(energy[i]));
      f << row;
    }
  });
}

std::vector<float> energies_from_f(const std::vector<float>& f) {
  std::vector<float> e(f.size());
  std::transform(f.begin(), f.end(), e.begin(), [](float v) { return -v; });
  return e;
}

Tensor image_rows(const Tensor& t, const NetSpec& net, int64_t max_rows, bool newest) {
  const int64_t n = t.shape.empty() ? 0 : std::min(max_rows, t.dim(0)), img = net.image_size();
  Tensor rows({n, net.in_c, net.in_h, net.in_w});
  const float* src = t.ptr() + (newest ? t.dim(0) - n : 0) * img;
  std::copy(src, src + n * img, rows.ptr());
  return rows;
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
