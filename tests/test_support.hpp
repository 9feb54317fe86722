// What the tests share: a temporary directory removed at the end, whole files in and out, random IDX
// images for end-to-end runs.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "engine/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/idx.hpp"

namespace ebm::test {

// A fresh directory under the system temp dir, removed with everything in it when the object goes.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "ebm_test") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / (tag + "_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void spit(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// n random 28x28 u8 images as a gzip IDX file (what scripts/get_data.sh writes); raw IDX under the same
// name in a build without zlib (readers go by the 1f 8b magic, not by the name).
inline void write_random_idx_images(const std::filesystem::path& p, uint32_t n, uint64_t seed) {
  IdxU8 a{{n, 28, 28}, std::vector<uint8_t>(size_t(n) * 784)};
  Rng r(seed, RngStream::kInit);
  for (auto& v : a.data) v = uint8_t(r.below(256));
  write_idx_u8(p.string(), a, gzip_available());
}

// A labelled data set anyone can classify (the evaluator's tests): class k is a bright 4x8 block at column
// 2 + 5·(k mod 5), row 4 + 12·(k div 5), moved by up to 1 pixel, over dim noise (0..40). Writes <dir>/
// train-images/-labels (n_train, classes in turn) and t10k-images/-labels (n_test) as IDX.
inline void write_glyph_dataset(const std::filesystem::path& dir, uint32_t n_train, uint32_t n_test, uint64_t seed) {
  std::filesystem::create_directories(dir);
  Rng r(seed, RngStream::kInit);
  auto write = [&](const std::string& prefix, uint32_t n) {
    IdxU8 img{{n, 28, 28}, std::vector<uint8_t>(size_t(n) * 784)};
    IdxU8 lab{{n}, std::vector<uint8_t>(n)};
    for (uint32_t i = 0; i < n; ++i) {
      const int k = int(i % 10);
      lab.data[i] = uint8_t(k);
      uint8_t* px = img.data.data() + size_t(i) * 784;
      for (int p = 0; p < 784; ++p) px[p] = uint8_t(r.below(41));
      const int x0 = 2 + 5 * (k % 5) + int(r.below(3)) - 1, y0 = 4 + 12 * (k / 5) + int(r.below(3)) - 1;
      for (int y = y0; y < y0 + 8; ++y)
        for (int x = x0; x < x0 + 4; ++x) px[y * 28 + x] = 255;
    }
    const bool gz = gzip_available();
    write_idx_u8((dir / (prefix + "-images-idx3-ubyte.gz")).string(), img, gz);
    write_idx_u8((dir / (prefix + "-labels-idx1-ubyte.gz")).string(), lab, gz);
  };
  write("train", n_train);
  write("t10k", n_test);
}

// Runs fn, which must throw a one-line UserError whose message holds every one of `parts`.
inline void expect_user_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

// What a checkpoint holds of `be` now (its tensors and streams), at step 0 of a run of `c`: a state to save.
inline TrainState state_of(Backend& be, const Config& c) {
  TrainState s;
  s.params = be.params();
  s.adam = be.adam();
  s.buffer = be.buffer();
  s.rng = be.rng_state();
  s.rng_backend = backend_name(be.facts().kind);
  s.lr = c.train.lr;
  s.seed = c.seed;
  return s;
}

// Occurrences of `needle` in `text` (events in a metrics.jsonl, lines in a log).
inline size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// n uniform-noise images [n,1,hw,hw] in [−1, 1].
inline Tensor random_images(int n, int hw, uint64_t seed) {
  Tensor t({n, 1, hw, hw});
  Rng(seed, RngStream::kInit).uniform(t.ptr(), t.numel(), -1, 1);
  return t;
}

// A temp dir with data/ holding 40 training and 20 test random images as gzip IDX: with batch 16, epochs
// of 16, 16 and a partial 8 — what the end-to-end run tests train on.
struct TinyDataRoot : TempDir {
  TinyDataRoot() : TempDir("ebm_run") {
    std::filesystem::create_directories(path / "data");
    write_random_idx_images(path / "data/train-images-idx3-ubyte.gz", 40, 1);
    write_random_idx_images(path / "data/t10k-images-idx3-ubyte.gz", 20, 2);
  }
};

}  // namespace ebm::test
