// Images in memory and as PNG files, through libpng (a UserError "built without libpng" where CMake found
// none; OptionalPictures and require_png_output decide what a tool does then). What is drawn on them (sample
// grids, histograms, curves) is host/io/charts.hpp.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace ebm {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

struct Image {
  int width = 0, height = 0, channels = 3;  // channels: 1 gray, 3 RGB
  std::vector<uint8_t> pixels;              // [height][width][channels], row-major

  Image() = default;
  Image(int w, int h, int c, Rgb fill = {});
  uint8_t* at(int x, int y) { return pixels.data() + (static_cast<size_t>(y) * width + x) * channels; }
  const uint8_t* at(int x, int y) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * channels; }
  Rgb get(int x, int y) const;                      // gray images give r = g = b
  void set(int x, int y, Rgb c);                    // outside the image: ignored; gray images take the luma
  void blend(int x, int y, Rgb c, float alpha);     // c over the pixel with opacity alpha in [0,1]
};

// PNG files. write_png writes path.tmp then renames; both throw UserError naming the file.
void write_png(const std::string& path, const Image& img);
// The bytes write_png writes (a PNG file in memory: TensorBoard's image summaries); UserError without libpng.
std::string encode_png(const Image& img);
Image read_png(const std::string& path);  // 8-bit gray (channels 1) or RGB (3); alpha is dropped

// Whether this build has libpng (CMake found it), so that PNG files can be written and read.
bool png_available();

// The pictures a tool draws on its own, that nobody named (ebm_train's sample grids and curves.png,
// ebm_sample's default grid, ebm_score's default histogram): a build without libpng skips them, and says
// so once, so that a long run never fails at its first epoch end for want of a picture.
class OptionalPictures {
 public:
  // tool: the message's prefix; what: the pictures skipped, e.g. "samples/epoch_N.png and curves.png".
  OptionalPictures(std::string tool, std::string what, bool have_png = png_available());
  // Whether to draw them: true with libpng; without, false, and the first call prints one line
  // "<tool>: warning: this build has no libpng: <what> not written ..." to `warn`.
  bool enabled(std::ostream& warn);

 private:
  std::string tool_, what_;
  bool have_png_, warned_ = false;
};

// A .png output the user named (--out, --trajectory, --hist): without libpng, a UserError naming the flag
// and the file, before any work starts.
void require_png_output(const std::string& flag, const std::string& path, bool have_png = png_available());

}  // namespace ebm
