// Pictures people look at: sample grids with energy labels, energy histograms, training curves, drawn into
// an Image (host/io/png_image.hpp writes it). Drawing is a few primitives and a built-in 5x7 bitmap font
// (printable ASCII), so no font files are needed anywhere.
#pragma once
#include <string>
#include <vector>

#include "host/io/png_image.hpp"

namespace ebm {

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
