// PNG I/O and the pictures: exact round trips through libpng, grid geometry and value mapping,
// charts of the promised size that are not blank, and errors naming the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "engine/error.hpp"
#include "host/io/charts.hpp"
#include "host/io/png_image.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

using test::expect_user_error;

class Png : public ::testing::Test {
 protected:
  void SetUp() override {
#if !EBM_HAVE_PNG
    GTEST_SKIP() << "built without libpng: PNG tests skipped";
#endif
  }
  std::string path(const std::string& name) const { return dir_ / name; }
  test::TempDir dir_;
};


bool same(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

size_t count_colours(const Image& img) {
  std::set<uint32_t> s;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const Rgb c = img.get(x, y);
      s.insert(uint32_t{c.r} << 16 | uint32_t{c.g} << 8 | c.b);
    }
  return s.size();
}

double non_white_fraction(const Image& img) {
  size_t n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) n += !same(img.get(x, y), {255, 255, 255});
  return static_cast<double>(n) / (static_cast<double>(img.width) * img.height);
}

}  // namespace

TEST_F(Png, RoundTripRgbAndGray) {
  for (int channels : {3, 1}) {
    SCOPED_TRACE(channels);
    Image img(7, 5, channels);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37 + 11);
    const std::string p = path("rt" + std::to_string(channels) + ".png");
    write_png(p, img);
    EXPECT_FALSE(fs::exists(p + ".tmp"));
    const Image back = read_png(p);
    EXPECT_EQ(back.width, 7);
    EXPECT_EQ(back.height, 5);
    EXPECT_EQ(back.channels, channels);
    EXPECT_EQ(back.pixels, img.pixels);
  }
}

TEST_F(Png, ErrorsNameTheFile) {
  const std::string unwritable = path("no_such_dir/grid.png");
  expect_user_error([&] { write_png(unwritable, Image(2, 2, 3)); }, {"cannot write", unwritable, "does not exist"});
  const std::string folder = path("folder.png");
  fs::create_directories(folder);
  expect_user_error([&] { write_png(folder, Image(2, 2, 3)); }, {"cannot write " + folder + ": is a directory"});
  EXPECT_FALSE(fs::exists(folder + ".tmp"));
  const std::string missing = path("missing.png");
  expect_user_error([&] { read_png(missing); }, {missing, ": no such file"});

  const std::string garbage = path("garbage.png");
  std::ofstream(garbage) << "this is not a PNG file at all";
  expect_user_error([&] { read_png(garbage); }, {garbage, "not a readable PNG"});

  // A real PNG cut short: the header reads, the pixel data does not.
  Image img(64, 64, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 7919 % 251);
  const std::string cut = path("cut.png");
  write_png(cut, img);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  expect_user_error([&] { read_png(cut); }, {cut, "PNG"});
}

TEST_F(Png, GridGeometryAndValueMapping) {
  const int n = 5, h = 8, w = 8, cols = 2, scale = 3;  // 3 rows, tiles 24x24
  std::vector<float> imgs(n * h * w, 0.f);
  std::fill(imgs.begin(), imgs.begin() + h * w, -1.f);              // image 0: black
  std::fill(imgs.begin() + h * w, imgs.begin() + 2 * h * w, 1.f);   // image 1: white
  std::fill(imgs.begin() + 2 * h * w, imgs.begin() + 3 * h * w, 5.f);   // image 2: clipped to white
  std::fill(imgs.begin() + 3 * h * w, imgs.begin() + 4 * h * w, -3.f);  // image 3: clipped to black
  // image 4 stays 0 -> mid gray

  const Image plain = image_grid(imgs.data(), n, h, w, cols, {}, scale);
  EXPECT_EQ(plain.channels, 3);
  EXPECT_EQ(plain.width, cols * w * scale + (cols + 1) * kGridSep);
  EXPECT_EQ(plain.height, 3 * h * scale + 4 * kGridSep);
  const int cell = w * scale + kGridSep;
  auto inside = [&](const Image& img, int i, int cell_h) { return img.get(kGridSep + (i % cols) * cell + 5, kGridSep + (i / cols) * cell_h + 5); };
  EXPECT_TRUE(same(inside(plain, 0, h * scale + kGridSep), {0, 0, 0}));
  EXPECT_TRUE(same(inside(plain, 1, h * scale + kGridSep), {255, 255, 255}));
  EXPECT_TRUE(same(inside(plain, 2, h * scale + kGridSep), {255, 255, 255}));
  EXPECT_TRUE(same(inside(plain, 3, h * scale + kGridSep), {0, 0, 0}));
  EXPECT_TRUE(same(inside(plain, 4, h * scale + kGridSep), {128, 128, 128}));

  // Labels add a strip under each tile (font scale 1 fits a 24-pixel tile) holding coloured text.
  const std::vector<std::string> labels{"E=1", "E=2", "", "-4", "E=5"};
  const Image lab = image_grid(imgs.data(), n, h, w, cols, labels, scale);
  const int strip = text_height(1) + 6;
  EXPECT_EQ(lab.width, plain.width);
  EXPECT_EQ(lab.height, 3 * (h * scale + strip) + 4 * kGridSep);
  EXPECT_TRUE(same(inside(lab, 1, h * scale + strip + kGridSep), {255, 255, 255}));
  int coloured = 0;
  for (int y = kGridSep + h * scale; y < kGridSep + h * scale + strip; ++y)
    for (int x = kGridSep; x < kGridSep + w * scale; ++x) {
      const Rgb c = lab.get(x, y);
      coloured += c.r != c.g || c.g != c.b;  // the label's ink, not the gray image or the dark strip
    }
  EXPECT_GT(coloured, 10);

  // The picture survives the file round trip.
  const std::string p = path("grid.png");
  write_png(p, lab);
  EXPECT_EQ(read_png(p).pixels, lab.pixels);

  // A label too wide for its tile widens the cells instead of being cut.
  const Image wide = image_grid(imgs.data(), 2, h, w, 2, {"E=-0.123456", "x"}, 1);
  EXPECT_EQ(wide.width, 2 * (text_width("E=-0.123456") + 2) + 3 * kGridSep);
  expect_user_error([&] { image_grid(imgs.data(), 0, h, w, 2, {}, 2); }, {"nothing to draw"});
}

TEST_F(Png, TextAndPrimitives) {
  EXPECT_EQ(text_width("AB", 2), 22);
  EXPECT_EQ(text_width("", 3), 0);
  Image img(20, 10, 3, {255, 255, 255});
  draw_text(img, 0, 0, "I", {0, 0, 0}, 1);  // 'I' is a vertical bar in column 2
  EXPECT_TRUE(same(img.get(2, 3), {0, 0, 0}));
  EXPECT_TRUE(same(img.get(0, 3), {255, 255, 255}));
  draw_line(img, 0, 9, 19, 9, {255, 0, 0});
  EXPECT_TRUE(same(img.get(10, 9), {255, 0, 0}));
  fill_rect(img, 15, -5, 100, 7, {0, 255, 0});  // clipped, not out of bounds
  EXPECT_TRUE(same(img.get(19, 0), {0, 255, 0}));
  blend_rect(img, 0, 5, 1, 1, {0, 0, 0}, 0.5f);
  EXPECT_TRUE(same(img.get(0, 5), {128, 128, 128}));
}

TEST_F(Png, HistogramAndLinePlotAreDrawn) {
  std::vector<float> a, b;
  for (int i = 0; i < 1000; ++i) a.push_back(std::sin(i * 0.37f) * 0.1f - 0.2f);
  for (int i = 0; i < 100; ++i) b.push_back(std::cos(i * 0.91f) * 0.2f + 0.1f);
  b.push_back(NAN);  // skipped, not fatal
  const Image hist = histogram_png(a, b, "real", "samples", "Energy", 30);
  EXPECT_EQ(hist.width, 640);
  EXPECT_EQ(hist.height, 400);
  EXPECT_GT(non_white_fraction(hist), 0.05);
  EXPECT_GT(count_colours(hist), 6u);  // two fills, their blend, outlines, text

  // Degenerate input (one value, an empty set) still gives a picture.
  const Image flat = histogram_png({1.f, 1.f}, {}, "a", "b", "flat", 10);
  EXPECT_EQ(flat.width, 640);
  EXPECT_GT(non_white_fraction(flat), 0.01);

  PlotSeries loss{"loss", {}, {}}, cdiv{"cdiv", {}, {}};
  for (int i = 0; i < 200; ++i) {
    loss.x.push_back(i), loss.y.push_back(std::exp(-i / 50.0));
    cdiv.x.push_back(i), cdiv.y.push_back(i == 100 ? NAN : -0.5 + i / 400.0);
  }
  const Image plot = line_plot({loss, cdiv}, "Training", "step");
  EXPECT_EQ(plot.width, 640);
  EXPECT_EQ(plot.height, 400);
  EXPECT_GT(non_white_fraction(plot), 0.02);
  EXPECT_GT(count_colours(plot), 4u);
  const Image small = line_plot({loss}, "t", "", 320, 200);
  EXPECT_EQ(small.width, 320);
  EXPECT_EQ(small.height, 200);

  const std::string p = path("plot.png");
  write_png(p, plot);
  EXPECT_EQ(read_png(p).pixels, plot.pixels);
}

// What a tool does with its pictures in a build without libpng (decided the same way in every build, so
// these run in both): pictures nobody named are skipped with one warning; a named .png output is refused.
TEST(OptionalPictures, WithLibpngTheyAreDrawnSilently) {
  OptionalPictures pictures("ebm_train", "samples/epoch_N.png and curves.png", /*have_png=*/true);
  std::ostringstream warn;
  EXPECT_TRUE(pictures.enabled(warn));
  EXPECT_TRUE(pictures.enabled(warn));
  EXPECT_EQ(warn.str(), "");
}

TEST(OptionalPictures, WithoutLibpngTheyAreSkippedWithOneWarning) {
  OptionalPictures pictures("ebm_train", "samples/epoch_N.png and curves.png", /*have_png=*/false);
  std::ostringstream warn;
  for (int epoch = 1; epoch <= 3; ++epoch) EXPECT_FALSE(pictures.enabled(warn)) << "epoch " << epoch;
  EXPECT_EQ(warn.str(),
            "ebm_train: warning: this build has no libpng: samples/epoch_N.png and curves.png not written (the rest "
            "of the output is; rebuild with libpng, Debian: libpng-dev, for pictures)\n");
}

TEST(OptionalPictures, ANamedPngOutputIsRefusedWithoutLibpng) {
  EXPECT_NO_THROW(require_png_output("--out", "grid.png", /*have_png=*/true));
  test::expect_user_error([] { require_png_output("--hist", "runs/h.png", /*have_png=*/false); },
                          {"--hist runs/h.png: this build has no libpng, so it writes no PNG pictures",
                           "Debian: libpng-dev"});
}

TEST(OptionalPictures, TheBuildSaysWhetherItHasLibpng) {
#if EBM_HAVE_PNG
  EXPECT_TRUE(png_available());
#else
  EXPECT_FALSE(png_available());
  test::TempDir dir;  // and the writer says so, naming the file, if anything calls it regardless
  test::expect_user_error([&] { write_png(dir / "a.png", Image(2, 2, 1)); }, {dir / "a.png", "built without libpng"});
#endif
}
