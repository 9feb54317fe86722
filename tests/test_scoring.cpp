// ebm_score's pieces: AUROC on hand-computed cases (ties, perfect and reversed separation) and against
// the pairwise definition, user image files brought to the network's input as training does, and the
// energy files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/eval/scoring.hpp"
#include "host/io/dataset.hpp"
#include "host/io/idx.hpp"
#include "host/io/npy.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

using test::expect_user_error;


// P(pos > neg) + ½ P(pos = neg) over all pairs: the definition the rank formula must match.
double auroc_pairwise(const std::vector<float>& pos, const std::vector<float>& neg) {
  double s = 0;
  for (float p : pos)
    for (float n : neg) s += p > n ? 1.0 : (p == n ? 0.5 : 0.0);
  return s / (double(pos.size()) * double(neg.size()));
}

class ScoringFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ebm_test_scoring_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A uint8 .npy as numpy writes it (v1.0, header padded to 64 bytes).
void write_u8_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<uint8_t>& data) {
  std::string header = npy_header_dict("|u1", shape);
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  std::ofstream f(path, std::ios::binary);
  f << out << header;
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

std::vector<uint8_t> random_u8(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  Rng rng(seed, RngStream::kInit);
  for (auto& b : v) b = uint8_t(rng.below(256));
  return v;
}

// load_images_for_net for files that must load without a warning.
Tensor load_quietly(const std::string& path, const NetSpec& net) {
  std::vector<std::string> warnings;
  Tensor x = load_images_for_net(path, net, warnings);
  EXPECT_TRUE(warnings.empty()) << path << ": unexpected warning: " << (warnings.empty() ? "" : warnings[0]);
  return x;
}

}  // namespace

TEST(Auroc, PerfectlySeparatedIsOneAndReversedIsZero) {
  EXPECT_DOUBLE_EQ(auroc({3, 4, 5}, {0, 1, 2}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({0, 1, 2}, {3, 4, 5}), 0.0);
  EXPECT_DOUBLE_EQ(auroc({10}, {-10}), 1.0);
}

TEST(Auroc, AllTiesIsOneHalf) {
  EXPECT_DOUBLE_EQ(auroc({0.3f, 0.3f, 0.3f}, {0.3f, 0.3f}), 0.5);
}

TEST(Auroc, HandComputedMixedCaseWithTies) {
  // pos {0.1, 0.4, 0.4, 0.9}, neg {0.4, 0.2}; pairs (pos vs neg):
  //   0.1: vs 0.4 → 0,   vs 0.2 → 0
  //   0.4: vs 0.4 → ½,   vs 0.2 → 1     (twice)
  //   0.9: vs 0.4 → 1,   vs 0.2 → 1
  // = (0 + 1.5 + 1.5 + 2) / 8 = 5/8
  EXPECT_DOUBLE_EQ(auroc({0.1f, 0.4f, 0.4f, 0.9f}, {0.4f, 0.2f}), 0.625);
  // The small case: pos {0.1, 0.4, 0.4}, neg {0.4, 0.2} → (0 + 1.5 + 1.5) / 6 = ½.
  EXPECT_DOUBLE_EQ(auroc({0.1f, 0.4f, 0.4f}, {0.4f, 0.2f}), 0.5);
  // Midranks across a tie that spans both sets: pos {1, 2, 2}, neg {2, 2, 3} → (0+0+0 + ½+½+0 + ½+½+0) / 9.
  EXPECT_DOUBLE_EQ(auroc({1, 2, 2}, {2, 2, 3}), 2.0 / 9.0);
}

TEST(Auroc, MatchesThePairwiseDefinitionAndIsAntisymmetric) {
  Rng rng(5, RngStream::kInit);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> a(1 + rng.below(40)), b(1 + rng.below(40));
    for (auto& v : a) v = float(rng.below(6));  // few distinct values: many ties
    for (auto& v : b) v = float(rng.below(6)) + 0.5f * float(rng.below(2));
    EXPECT_NEAR(auroc(a, b), auroc_pairwise(a, b), 1e-12);
    EXPECT_NEAR(auroc(a, b) + auroc(b, a), 1.0, 1e-12);
  }
}

TEST(Auroc, InfinitiesRankAndNaNOrEmptyAreErrors) {
  EXPECT_DOUBLE_EQ(auroc({INFINITY}, {1e30f}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({-INFINITY, 0}, {-INFINITY}), 0.75);
  expect_user_error([] { auroc({}, {1}); }, {"non-empty"});
  expect_user_error([] { auroc({1}, {}); }, {"non-empty"});
  expect_user_error([] { auroc({NAN}, {1}); }, {"NaN"});
}

TEST(Energies, SignAndStats) {
  EXPECT_EQ(energies_from_f({1.5f, -2.f, 0.f}), (std::vector<float>{-1.5f, 2.f, -0.f}));
  const EnergyStats s = energy_stats({1, 2, 6});
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.mean, 3.0);
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 6.0);
}

TEST(Energies, DataLabelIsParentAndFile) {
  EXPECT_EQ(data_label("data/mnist/t10k-images-idx3-ubyte.gz"), "mnist/t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(data_label("x.npy"), "x.npy");
  EXPECT_EQ(data_label("./x.npy"), "x.npy");
}

TEST_F(ScoringFiles, EnergiesAsCsvAndNpy) {
  const std::vector<float> e{-0.125f, 3.0f, 1.0e-7f};
  write_energies(path("e.csv"), e);
  std::ifstream f(path("e.csv"));
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(f, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);  // header + one row per image
  EXPECT_EQ(lines[0], "index,energy");
  EXPECT_EQ(lines[1], "0,-0.125");
  EXPECT_EQ(lines[2], "1,3");
  EXPECT_EQ(std::stof(lines[3].substr(2)), 1.0e-7f);  // %.9g round-trips a float

  write_energies(path("e.npy"), e);
  const NpyArray a = read_npy(path("e.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.f32, e);

  expect_user_error([&] { write_energies(path("e.txt"), e); }, {"e.txt", ".npy or .csv"});
  expect_user_error([&] { write_energies(path("nodir/e.csv"), e); }, {"nodir/e.csv"});
}

TEST_F(ScoringFiles, FloatNpyOfTheNetworkSizeIsUsedAsIs) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  Tensor x({3, 1, 32, 32});
  Rng(1, RngStream::kInit).uniform(x.ptr(), x.numel(), -1, 1);
  write_npy(path("x.npy"), x);
  const Tensor got = load_quietly(path("x.npy"), net);
  EXPECT_EQ(got.shape, x.shape);
  EXPECT_EQ(got.data, x.data);
}

TEST_F(ScoringFiles, SmallerImagesArePaddedAsInTraining) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  const std::vector<uint8_t> u8 = random_u8(2 * 28 * 28, 2);
  const Tensor expect = preprocess_images(u8.data(), 2, 28, 28, 32);

  // uint8 .npy, [N,H,W]
  write_u8_npy(path("u8.npy"), {2, 28, 28}, u8);
  EXPECT_EQ(load_quietly(path("u8.npy"), net).data, expect.data);

  // float .npy [N,1,28,28] already in [-1,1]: padded with -1 the same way
  Tensor f({2, 1, 28, 28});
  for (size_t k = 0; k < u8.size(); ++k) f.data[k] = (float(u8[k]) - 127.5f) / 127.5f;
  write_npy(path("f.npy"), f);
  const Tensor got = load_quietly(path("f.npy"), net);
  EXPECT_EQ(got.shape, (std::vector<int64_t>{2, 1, 32, 32}));
  EXPECT_EQ(got.data, expect.data);

  // IDX, gzip (raw under the same name in a build without zlib)
  write_idx_u8(path("imgs.idx.gz"), {{2, 28, 28}, u8}, gzip_available());
  EXPECT_EQ(load_quietly(path("imgs.idx.gz"), net).data, expect.data);

  // An odd margin goes bottom/right, as preprocess_images puts it.
  const std::vector<uint8_t> small = random_u8(1 * 5 * 6, 3);
  Tensor fs5({1, 1, 5, 6});
  for (size_t k = 0; k < small.size(); ++k) fs5.data[k] = (float(small[k]) - 127.5f) / 127.5f;
  EXPECT_EQ(pad_images(fs5, 8).data, preprocess_images(small.data(), 1, 5, 6, 8).data);
}

TEST_F(ScoringFiles, BadImageFilesNameTheFileAndTheSizes) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  std::vector<std::string> warnings;
  expect_user_error([&] { load_images_for_net(path("missing.npy"), net, warnings); }, {path("missing.npy"), "no such file"});
  expect_user_error([&] { load_images_for_net(dir_.string(), net, warnings); }, {dir_.string(), "directory"});

  write_npy(path("big.npy"), Tensor({2, 1, 40, 40}));
  expect_user_error([&] { load_images_for_net(path("big.npy"), net, warnings); }, {path("big.npy"), "40x40", "32x32"});

  Tensor bright({1, 1, 32, 32}, 0.5f);
  bright.data[7] = 255.f;  // pixels saved as 0..255 floats
  write_npy(path("bright.npy"), bright);
  expect_user_error([&] { load_images_for_net(path("bright.npy"), net, warnings); }, {path("bright.npy"), "[-1,1]", "255"});

  write_npy(path("empty.npy"), Tensor({0, 1, 32, 32}));
  expect_user_error([&] { load_images_for_net(path("empty.npy"), net, warnings); }, {path("empty.npy"), "no images"});

  // Found by fuzzing: images of width 0 and a huge count used to pass, then fail allocating the padded copy.
  write_npy(path("thin.npy"), Tensor({1099511627776LL, 1, 28, 0}));
  expect_user_error([&] { load_images_for_net(path("thin.npy"), net, warnings); }, {path("thin.npy"), "28x0 pixels"});

  write_npy(path("flat.npy"), Tensor({4, 1024}));
  expect_user_error([&] { load_images_for_net(path("flat.npy"), net, warnings); }, {path("flat.npy"), "[4,1024]"});

  {
    std::ofstream f(path("junk.bin"));
    f << "not an image file at all";
  }
  expect_user_error([&] { load_images_for_net(path("junk.bin"), net, warnings); }, {path("junk.bin")});
}

TEST_F(ScoringFiles, FilesNamedNpyAreReportedAsNpyNotIdx) {
  // Issue 10 item 4: an empty or non-numpy file named .npy was reported as a bad IDX magic.
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  std::vector<std::string> warnings;
  test::spit(path("empty.npy"), "");
  expect_user_error([&] { load_images_for_net(path("empty.npy"), net, warnings); },
                    {path("empty.npy") + ": is empty (0 bytes), expected images (.npy or IDX)"});
  test::spit(path("hello.npy"), "hello world");
  expect_user_error([&] { load_images_for_net(path("hello.npy"), net, warnings); },
                    {path("hello.npy") + ": not a .npy file (it starts with bytes 68 65 6C 6C 6F 20, not \\x93NUMPY)"});
  test::spit(path("x.NPY"), "PK");  // the extension in any case
  expect_user_error([&] { load_images_for_net(path("x.NPY"), net, warnings); }, {path("x.NPY"), "not a .npy file", "50 4B"});
  // Without the .npy name the magic decides, and a file that is neither is reported by the IDX reader.
  test::spit(path("empty.gz"), "");
  expect_user_error([&] { load_images_for_net(path("empty.gz"), net, warnings); }, {path("empty.gz"), "is empty (0 bytes)"});
  test::spit(path("hello.bin"), "hello world");
  expect_user_error([&] { load_images_for_net(path("hello.bin"), net, warnings); },
                    {path("hello.bin"), "not an IDX file: bad magic 0x68 0x65"});
  EXPECT_TRUE(warnings.empty());
}

TEST_F(ScoringFiles, FloatImagesThatNeverGoBelowZeroAreWarnedAbout) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 32);
  // MNIST-like digits scaled to [0,1] (x / 255) instead of [-1,1]: loads, with one warning.
  Tensor unit({2, 1, 28, 28}, 0.f);
  for (int64_t i = 0; i < unit.numel(); i += 7) unit.data[i] = 1.f;
  write_npy(path("unit.npy"), unit);
  std::vector<std::string> warnings;
  const Tensor x = load_images_for_net(path("unit.npy"), net, warnings);
  EXPECT_EQ(x.shape, (std::vector<int64_t>{2, 1, 32, 32}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind(path("unit.npy") + ": float pixels span [0, 1] and never go below 0", 0), 0u) << warnings[0];
  EXPECT_NE(warnings[0].find("trained on [-1,1]"), std::string::npos) << warnings[0];
  EXPECT_EQ(warnings[0].find('\n'), std::string::npos);

  // One pixel below 0 is enough to be the training scale: no warning.
  unit.data[3] = -0.5f;
  write_npy(path("signed.npy"), unit);
  load_quietly(path("signed.npy"), net);
  // uint8 pixels are mapped by the loader itself, so even all-white ones are no cause for a warning.
  write_u8_npy(path("white.npy"), {1, 28, 28}, std::vector<uint8_t>(784, 255));
  EXPECT_FLOAT_EQ(load_quietly(path("white.npy"), net).data[2 * 32 + 2], 1.f);
}

TEST(Energies, NonFiniteEnergiesAreCounted) {
  EXPECT_EQ(non_finite_energies({-1.f, 0.f, 3e38f}, "x.npy"), "");
  EXPECT_EQ(non_finite_energies({NAN, 1.f, -INFINITY}, "data/x.npy"),
            "2 of 3 energies of data/x.npy are not finite (NaN or inf): the checkpoint may have diverged");
  EXPECT_EQ(non_finite_energies({}, "x"), "");
}

TEST_F(ScoringFiles, EnergyFilesAnyCaseAndNeverIntoADirectory) {
  write_energies(path("E.CSV"), {1.5f});
  EXPECT_EQ(test::slurp(path("E.CSV")), "index,energy\n0,1.5\n");
  // Replacing an existing file is what an output does; a directory in its place is an error.
  write_energies(path("E.CSV"), {2.f, 3.f});
  EXPECT_EQ(test::slurp(path("E.CSV")), "index,energy\n0,2\n1,3\n");
  fs::create_directories(path("d.csv"));
  expect_user_error([&] { write_energies(path("d.csv"), {1.f}); }, {"cannot write " + path("d.csv") + ": is a directory"});
  EXPECT_FALSE(fs::exists(path("d.csv.tmp")));
  EXPECT_TRUE(fs::is_directory(path("d.csv")));
}
