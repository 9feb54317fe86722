// Pictures people look at: sample grids with energy labels, energy histograms, training curves.
// PNG I/O through libpng (a UserError "built without libpng" where CMake found none; OptionalPictures
// and require_png_output decide what a tool does then); drawing is a few
// primitives and a built-in 5x7 bitmap font (printable ASCII), so no font files are needed anywhere.
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

// Drawing; everything is clipped to the image.
void fill_rect(Image& img, int x, int y, int w, int h, Rgb c);
void blend_rect(Image& img, int x, int y, int w, int h, Rgb c, float alpha);
void draw_line(Image& img, int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);
// Text with its top-left corner at (x, y); each glyph is 5x7 cells of scale x scale pixels on a
// 6-cell advance. Characters outside printable ASCII draw as '?'.
void draw_text(Image& img, int x, int y, const std::string& text, Rgb c, int scale = 1);
int text_width(const std::string& text, int scale = 1);
constexpr int text_height(int scale = 1) { return 7 * scale; }

// images: [n,1,h,w] in [-1,1] mapped to gray 0..255 (clipped), each upscaled by `scale` and laid out
// `cols` per row (cols <= 0: a near-square grid; cols > n: n) with kGridSep-pixel separators around
// every cell. With any non-empty label each tile gets a strip under it with its label centred,
// in the largest font scale (1..3) that fits the tile; a label wider than the tile at font scale 1
// widens the cells. RGB.
//   width  = cols * cell_w + (cols + 1) * kGridSep,  cell_w = max(w*scale, widest label + 2)
//   height = rows * (h*scale + strip) + (rows + 1) * kGridSep,  strip = 0 or text_height(font) + 6
constexpr int kGridSep = 2;
Image image_grid(const float* images, int n, int h, int w, int cols, const std::vector<std::string>& labels = {},
                 int scale = 2);

// Two overlaid histograms over the common range of a and b (non-finite values skipped), each
// normalised to fractions of its own count so sets of different sizes compare; dashed lines at the
// means; x ticks from min to max; legend with labels, counts and means. 640x400 RGB.
Image histogram_png(const std::vector<float>& a, const std::vector<float>& b, const std::string& label_a,
                    const std::string& label_b, const std::string& title, int bins = 40);

// `top` above `bottom` (RGB, both), left-aligned; the narrower one padded with white on the right.
Image stack_vertically(const Image& top, const Image& bottom);

// Training curves: named (x, y) series on one chart; non-finite points break the line.
struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
};
Image line_plot(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label = "",
                int width = 640, int height = 400);

}  // namespace ebm
