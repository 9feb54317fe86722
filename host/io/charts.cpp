#include "host/io/charts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/error.hpp"

namespace ebm {

namespace {

// Classic 5x7 LCD font, printable ASCII 0x20..0x7E; 5 column bytes per glyph, bit 0 = top row.
constexpr uint8_t kFont[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},  //  !"
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},  // #$%
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},  // &'(
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},  // )*+
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},  // ,-.
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},  // /01
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},  // 234
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},  // 567
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},  // 89:
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},  // ;<=
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},  // >?@
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},  // ABC
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x01, 0x01},  // DEF
    {0x3E, 0x41, 0x41, 0x51, 0x32}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},  // GHI
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},  // JKL
    {0x7F, 0x02, 0x04, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},  // MNO
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},  // PQR
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},  // STU
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x7F, 0x20, 0x18, 0x20, 0x7F}, {0x63, 0x14, 0x08, 0x14, 0x63},  // VWX
    {0x03, 0x04, 0x78, 0x04, 0x03}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},  // YZ[
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},  // \]^
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},  // _`a
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},  // bcd
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x08, 0x54, 0x54, 0x54, 0x3C},  // efg
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x44, 0x3D, 0x00},  // hij
    {0x00, 0x7F, 0x10, 0x28, 0x44}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},  // klm
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0x7C, 0x14, 0x14, 0x14, 0x08},  // nop
    {0x08, 0x14, 0x14, 0x14, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},  // qrs
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},  // tuv
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C},  // wxy
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},  // z{|
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08}};                                 // }~

constexpr Rgb kWhite{255, 255, 255}, kInk{25, 25, 25}, kAxis{60, 60, 60}, kGrid{228, 228, 228};
// matplotlib's tab10: distinct, colour-blind-friendlier than pure primaries.
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                            {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

Rgb darker(Rgb c) { return {uint8_t(c.r * 0.6), uint8_t(c.g * 0.6), uint8_t(c.b * 0.6)}; }

// Shortest %g that still tells neighbouring ticks apart (a narrow range around a large value needs
// more digits than 3).
std::vector<std::string> tick_labels(const std::vector<double>& v) {
  std::vector<std::string> out(v.size());
  double big = 0;
  for (double x : v) big = std::max(big, std::abs(x));
  // Step counts and other large values read better as whole numbers than as 1.17e+03.
  for (int prec = big >= 1000 && big < 1e9 ? 0 : 3; prec <= 9; prec = std::max(prec + 1, 3)) {
    for (size_t i = 0; i < v.size(); ++i) {
      char buf[32];
      const double x = std::abs(v[i]) <= 1e-9 * big ? 0.0 : v[i];  // -1e-18 from linspace reads "0"
      if (prec == 0) std::snprintf(buf, sizeof buf, "%.0f", x);
      else std::snprintf(buf, sizeof buf, "%.*g", prec, x);
      out[i] = buf;
    }
    bool distinct = true;
    for (size_t i = 1; i < v.size(); ++i) distinct &= out[i] != out[i - 1];
    if (distinct) break;
  }
  return out;
}

std::vector<double> linspace(double a, double b, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = n == 1 ? a : a + (b - a) * i / (n - 1);
  return v;
}

// A chart's plot area and the data range it shows.
struct Frame {
  int left = 0, top = 0, right = 0, bottom = 0;  // pixels, plot area is [left, right] x [top, bottom]
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  int px(double x) const { return left + static_cast<int>(std::lround((x - x0) / (x1 - x0) * (right - left))); }
  int py(double y) const { return bottom - static_cast<int>(std::lround((y - y0) / (y1 - y0) * (bottom - top))); }
};

// Legend swatches and names in rows under the title (never on top of the data); returns its height.
int draw_legend(Image& img, int x, int y, int max_w, const std::vector<std::pair<std::string, Rgb>>& items) {
  int cx = x, cy = y;
  for (const auto& [name, c] : items) {
    const int w = 14 + text_width(name) + 18;
    if (cx > x && cx + w > x + max_w) cx = x, cy += 12;
    fill_rect(img, cx, cy, 10, 7, c);
    draw_text(img, cx + 14, cy, name, kInk);
    cx += w;
  }
  return items.empty() ? 0 : cy - y + 12;
}

// Title, legend, axes box, grid and ticks at the given values; returns the frame for the data.
Frame draw_chart(Image& img, const std::string& title, const std::string& x_label,
                 const std::vector<std::pair<std::string, Rgb>>& legend, const std::vector<double>& xt,
                 const std::vector<double>& yt, double x0, double x1, double y0, double y1) {
  const std::vector<std::string> xs = tick_labels(xt), ys = tick_labels(yt);
  int y_label_w = 0;
  for (const auto& s : ys) y_label_w = std::max(y_label_w, text_width(s));
  Frame f;
  f.left = y_label_w + 14;
  f.right = img.width - 1 - std::max(16, text_width(xs.back()) / 2 + 4);
  draw_text(img, (img.width - text_width(title, 2)) / 2, 8, title, kInk, 2);
  const int legend_h = draw_legend(img, f.left, 30, f.right - f.left, legend);
  f.top = 30 + legend_h + 8;
  f.bottom = img.height - 1 - (x_label.empty() ? 20 : 34);
  f.x0 = x0, f.x1 = x1, f.y0 = y0, f.y1 = y1;

  for (size_t i = 0; i < xt.size(); ++i) {
    const int x = f.px(xt[i]);
    draw_line(img, x, f.top, x, f.bottom, kGrid);
    draw_line(img, x, f.bottom, x, f.bottom + 4, kAxis);
    draw_text(img, std::clamp(x - text_width(xs[i]) / 2, 0, img.width - text_width(xs[i])), f.bottom + 7, xs[i], kInk);
  }
  for (size_t i = 0; i < yt.size(); ++i) {
    const int y = f.py(yt[i]);
    draw_line(img, f.left, y, f.right, y, kGrid);
    draw_line(img, f.left - 4, y, f.left, y, kAxis);
    draw_text(img, f.left - 7 - text_width(ys[i]), y - 3, ys[i], kInk);
  }
  if (!x_label.empty()) draw_text(img, (f.left + f.right - text_width(x_label)) / 2, f.bottom + 21, x_label, kInk);
  return f;
}

void draw_box(Image& img, const Frame& f) {
  draw_line(img, f.left, f.top, f.right, f.top, kAxis);
  draw_line(img, f.left, f.bottom, f.right, f.bottom, kAxis);
  draw_line(img, f.left, f.top, f.left, f.bottom, kAxis);
  draw_line(img, f.right, f.top, f.right, f.bottom, kAxis);
}

// Finite min and max of several arrays; a degenerate range is widened so charts never divide by zero.
template <class It>
void extend_range(It begin, It end, double& lo, double& hi) {
  for (It it = begin; it != end; ++it)
    if (std::isfinite(*it)) lo = std::min(lo, double(*it)), hi = std::max(hi, double(*it));
}
void settle_range(double& lo, double& hi) {
  if (lo > hi) lo = 0, hi = 1;  // nothing finite
  if (lo == hi) {
    const double d = std::max(std::abs(lo) * 0.1, 0.5);
    lo -= d, hi += d;
  }
}

std::string fmt_mean(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Drawing

Image stack_vertically(const Image& top, const Image& bottom) {
  EBM_CHECK(top.channels == 3 && bottom.channels == 3, "stack_vertically: RGB images only");
  Image out(std::max(top.width, bottom.width), top.height + bottom.height, 3, Rgb{255, 255, 255});
  for (int y = 0; y < top.height; ++y) std::copy_n(top.at(0, y), size_t(top.width) * 3, out.at(0, y));
  for (int y = 0; y < bottom.height; ++y) std::copy_n(bottom.at(0, y), size_t(bottom.width) * 3, out.at(0, top.height + y));
  return out;
}

void fill_rect(Image& img, int x, int y, int w, int h, Rgb c) {
  for (int yy = std::max(y, 0); yy < std::min(y + h, img.height); ++yy)
    for (int xx = std::max(x, 0); xx < std::min(x + w, img.width); ++xx) img.set(xx, yy, c);
}

void blend_rect(Image& img, int x, int y, int w, int h, Rgb c, float alpha) {
  for (int yy = std::max(y, 0); yy < std::min(y + h, img.height); ++yy)
    for (int xx = std::max(x, 0); xx < std::min(x + w, img.width); ++xx) img.blend(xx, yy, c, alpha);
}

void draw_line(Image& img, int x0, int y0, int x1, int y1, Rgb c, int thickness) {
  // Bresenham, stamping a thickness x thickness square per step.
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const int lo = -(thickness - 1) / 2;
  for (int err = dx + dy;;) {
    fill_rect(img, x0 + lo, y0 + lo, thickness, thickness, c);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

int text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * 6 - 1) * scale;
}

void draw_text(Image& img, int x, int y, const std::string& text, Rgb c, int scale) {
  for (unsigned char ch : text) {
    const uint8_t* g = kFont[(ch >= 0x20 && ch < 0x7F ? ch : '?') - 0x20];
    for (int col = 0; col < 5; ++col)
      for (int row = 0; row < 7; ++row)
        if (g[col] >> row & 1) fill_rect(img, x + col * scale, y + row * scale, scale, scale, c);
    x += 6 * scale;
  }
}

// ---------------------------------------------------------------------------------------------------
// Pictures

Image image_grid(const float* images, int n, int h, int w, int cols, const std::vector<std::string>& labels, int scale) {
  if (n <= 0 || h <= 0 || w <= 0 || scale <= 0) user_fail("image_grid: nothing to draw (n=", n, ", ", h, "x", w, ", scale ", scale, ")");
  EBM_CHECK(labels.empty() || labels.size() == static_cast<size_t>(n), "image_grid: one label per image (or none)");
  if (cols <= 0) cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  cols = std::min(cols, n);
  const int rows = (n + cols - 1) / cols, tw = w * scale, th = h * scale;

  int widest = 0;  // in font-scale-1 pixels
  for (const auto& s : labels) widest = std::max(widest, text_width(s));
  int font = 1;
  while (font < 3 && widest > 0 && widest * (font + 1) + 4 * (font + 1) <= tw) ++font;  // keep a gap between labels
  const int cell_w = std::max(tw, widest * font + 2), strip = widest > 0 ? text_height(font) + 6 : 0;
  const int sep = kGridSep, cell_h = th + strip;

  const Rgb sep_colour{96, 96, 110}, strip_colour{16, 16, 24}, label_colour{255, 214, 92};
  Image img(cols * cell_w + (cols + 1) * sep, rows * cell_h + (rows + 1) * sep, 3, sep_colour);
  for (int i = 0; i < n; ++i) {
    const int cx = sep + (i % cols) * (cell_w + sep), cy = sep + (i / cols) * (cell_h + sep);
    const int ox = cx + (cell_w - tw) / 2;
    fill_rect(img, cx, cy, cell_w, cell_h, strip_colour);
    const float* src = images + static_cast<size_t>(i) * h * w;  // [1,h,w]
    for (int y = 0; y < th; ++y)
      for (int x = 0; x < tw; ++x) {
        const float v = src[(y / scale) * w + x / scale];
        const float g = std::isfinite(v) ? std::clamp((v + 1.f) * 127.5f, 0.f, 255.f) : 0.f;
        const auto u = static_cast<uint8_t>(std::lround(g));
        img.set(ox + x, cy + y, {u, u, u});
      }
    if (!labels.empty() && !labels[i].empty())
      draw_text(img, cx + (cell_w - text_width(labels[i], font)) / 2, cy + th + 3, labels[i], label_colour, font);
  }
  return img;
}

Image histogram_png(const std::vector<float>& a, const std::vector<float>& b, const std::string& label_a,
                    const std::string& label_b, const std::string& title, int bins) {
  bins = std::max(bins, 1);
  double lo = INFINITY, hi = -INFINITY;
  extend_range(a.begin(), a.end(), lo, hi);
  extend_range(b.begin(), b.end(), lo, hi);
  settle_range(lo, hi);

  // Fractions per bin, each set over its own finite count.
  auto histogram = [&](const std::vector<float>& v, double& mean, int64_t& count) {
    std::vector<double> h(bins, 0.0);
    double sum = 0;
    count = 0;
    for (float x : v) {
      if (!std::isfinite(x)) continue;
      const int k = std::clamp(static_cast<int>((x - lo) / (hi - lo) * bins), 0, bins - 1);
      h[k] += 1, sum += x, ++count;
    }
    for (double& c : h) c /= std::max<int64_t>(count, 1);
    mean = count ? sum / count : NAN;
    return h;
  };
  double mean_a, mean_b;
  int64_t n_a, n_b;
  const std::vector<double> ha = histogram(a, mean_a, n_a), hb = histogram(b, mean_b, n_b);
  double top = 0;
  for (int k = 0; k < bins; ++k) top = std::max({top, ha[k], hb[k]});
  if (top <= 0) top = 1;

  const Rgb ca = kPalette[0], cb = kPalette[1];
  auto legend_name = [](const std::string& label, int64_t n, double mean) {
    return label + "  (n=" + std::to_string(n) + (n ? ", mean " + fmt_mean(mean) : "") + ")";
  };
  Image img(640, 400, 3, kWhite);
  const Frame f = draw_chart(img, title, "", {{legend_name(label_a, n_a, mean_a), ca}, {legend_name(label_b, n_b, mean_b), cb}},
                             linspace(lo, hi, 5), linspace(0, top, 3), lo, hi, 0, top * 1.08);
  // Translucent bars (where both overlap the colours mix), then each outline in a darker shade.
  for (const auto& [h, c] : {std::pair{&ha, ca}, std::pair{&hb, cb}}) {
    for (int k = 0; k < bins; ++k) {
      if ((*h)[k] <= 0) continue;
      const int x0 = f.px(lo + (hi - lo) * k / bins), x1 = f.px(lo + (hi - lo) * (k + 1) / bins), y = f.py((*h)[k]);
      blend_rect(img, x0, y, std::max(x1 - x0, 1), f.bottom - y, c, 0.5f);
    }
  }
  for (const auto& [h, c, mean] : {std::tuple{&ha, ca, mean_a}, std::tuple{&hb, cb, mean_b}}) {
    int prev_y = f.bottom;
    for (int k = 0; k < bins; ++k) {
      const int x0 = f.px(lo + (hi - lo) * k / bins), x1 = f.px(lo + (hi - lo) * (k + 1) / bins), y = f.py((*h)[k]);
      draw_line(img, x0, prev_y, x0, y, darker(c));
      draw_line(img, x0, y, x1, y, darker(c));
      prev_y = y;
    }
    draw_line(img, f.right, prev_y, f.right, f.bottom, darker(c));
    if (std::isfinite(mean))  // dashed mean line
      for (int y = f.top; y < f.bottom; y += 8) draw_line(img, f.px(mean), y, f.px(mean), std::min(y + 4, f.bottom), darker(c), 2);
  }
  draw_box(img, f);
  return img;
}

Image line_plot(const std::vector<PlotSeries>& series, const std::string& title, const std::string& x_label, int width,
                int height) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  std::vector<std::pair<std::string, Rgb>> legend;
  for (size_t s = 0; s < series.size(); ++s) {
    EBM_CHECK(series[s].x.size() == series[s].y.size(), "line_plot: series '" + series[s].name + "' has x and y of different lengths");
    extend_range(series[s].x.begin(), series[s].x.end(), x0, x1);
    extend_range(series[s].y.begin(), series[s].y.end(), y0, y1);
    legend.emplace_back(series[s].name, kPalette[s % std::size(kPalette)]);
  }
  settle_range(x0, x1);
  settle_range(y0, y1);
  // Ticks sit at the data's min and max; the frame leaves a margin so curves never hide in the border.
  const double pad = 0.05 * (y1 - y0);
  Image img(std::max(width, 200), std::max(height, 150), 3, kWhite);
  const Frame f = draw_chart(img, title, x_label, legend, linspace(x0, x1, 5), linspace(y0, y1, 5), x0, x1, y0 - pad, y1 + pad);
  for (size_t s = 0; s < series.size(); ++s) {
    const Rgb c = kPalette[s % std::size(kPalette)];
    const auto& xs = series[s].x;
    const auto& ys = series[s].y;
    const bool markers = xs.size() <= 40;  // sparse series (per-epoch metrics) show their points
    bool have_prev = false;
    int px = 0, py = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) {
        have_prev = false;
        continue;
      }
      const int x = f.px(xs[i]), y = f.py(ys[i]);
      if (have_prev) draw_line(img, px, py, x, y, c, 2);
      if (markers) fill_rect(img, x - 2, y - 2, 5, 5, c);
      px = x, py = y, have_prev = true;
    }
  }
  draw_box(img, f);
  return img;
}

}  // namespace ebm
