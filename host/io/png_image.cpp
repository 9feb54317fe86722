#include "host/io/png_image.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "engine/error.hpp"
#include "host/io/input_file.hpp"
#include "host/io/output_files.hpp"

#if EBM_HAVE_PNG
#include <png.h>
#endif

namespace ebm {

// ---------------------------------------------------------------------------------------------------
// Image and PNG I/O

Image::Image(int w, int h, int c, Rgb fill) : width(w), height(h), channels(c) {
  EBM_CHECK(w >= 0 && h >= 0 && (c == 1 || c == 3), "image must be gray (1) or RGB (3) with non-negative size");
  pixels.resize(static_cast<size_t>(w) * h * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) set(x, y, fill);
}

Rgb Image::get(int x, int y) const {
  const uint8_t* p = at(x, y);
  return channels == 1 ? Rgb{p[0], p[0], p[0]} : Rgb{p[0], p[1], p[2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = at(x, y);
  if (channels == 1) {
    p[0] = static_cast<uint8_t>(std::lround(0.299 * c.r + 0.587 * c.g + 0.114 * c.b));
  } else {
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
}

void Image::blend(int x, int y, Rgb c, float alpha) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  const Rgb o = get(x, y);
  auto mix = [alpha](uint8_t a, uint8_t b) { return static_cast<uint8_t>(std::lround(a * (1 - alpha) + b * alpha)); };
  set(x, y, {mix(o.r, c.r), mix(o.g, c.g), mix(o.b, c.b)});
}

namespace {

void check_pixels(const Image& img, const char* what) {
  EBM_CHECK((img.channels == 1 || img.channels == 3) && img.width > 0 && img.height > 0 &&
                img.pixels.size() == static_cast<size_t>(img.width) * img.height * img.channels,
            std::string(what) + ": image size does not match its pixels");
}

#if EBM_HAVE_PNG
// libpng's simplified API reports errors through the struct instead of longjmp, which keeps C++ frames out
// of its error path. False and `why` on failure.
bool encode_png_to(const Image& img, std::string& out, std::string& why) {
  auto fresh = [&] {
    png_image pi;
    std::memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = static_cast<png_uint_32>(img.width);
    pi.height = static_cast<png_uint_32>(img.height);
    pi.format = img.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    return pi;
  };
  png_image pi = fresh();
  png_alloc_size_t size = 0;  // a first pass with no buffer measures the file
  if (!png_image_write_to_memory(&pi, nullptr, &size, 0, img.pixels.data(), 0, nullptr)) {
    why = pi.message;
    return false;
  }
  out.assign(size, '\0');
  pi = fresh();
  if (!png_image_write_to_memory(&pi, out.data(), &size, 0, img.pixels.data(), 0, nullptr)) {
    why = pi.message;
    return false;
  }
  out.resize(size);
  return true;
}
#endif

}  // namespace

std::string encode_png(const Image& img) {
  check_pixels(img, "encode_png");
#if EBM_HAVE_PNG
  std::string out, why;
  if (!encode_png_to(img, out, why)) user_fail("cannot encode a PNG image: ", why);
  return out;
#else
  user_fail("cannot encode a PNG image: built without libpng");
#endif
}

void write_png(const std::string& path, const Image& img) {
  check_pixels(img, "write_png");
#if EBM_HAVE_PNG
  if (const std::string why = output_file_problem(path); !why.empty()) user_fail("cannot write ", path, ": ", why);
  std::string bytes, why;
  if (!encode_png_to(img, bytes, why)) user_fail("cannot write ", path, ": ", why);
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) user_fail("cannot write ", path, ": ", std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  why = std::strerror(errno);
  if (std::fclose(f) != 0 || !ok) {
    std::filesystem::remove(tmp);
    user_fail("cannot write ", path, ": ", why);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    user_fail("cannot write ", path, ": ", ec.message());
  }
#else
  user_fail("cannot write ", path, ": built without libpng");
#endif
}

Image read_png(const std::string& path) {
#if EBM_HAVE_PNG
  require_regular_file(path, "a PNG file");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) user_fail("cannot open PNG file ", path, ": ", std::strerror(errno));
  png_image pi;
  std::memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_stdio(&pi, f)) {
    std::fclose(f);
    user_fail(path, ": not a readable PNG (", pi.message, ")");
  }
  const int channels = (pi.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  pi.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image img(static_cast<int>(pi.width), static_cast<int>(pi.height), channels);
  const int ok = png_image_finish_read(&pi, nullptr, img.pixels.data(), 0, nullptr);
  std::fclose(f);
  if (!ok) user_fail(path, ": corrupt PNG (", pi.message, ")");
  return img;
#else
  user_fail("cannot read ", path, ": built without libpng");
#endif
}

bool png_available() {
#if EBM_HAVE_PNG
  return true;
#else
  return false;
#endif
}

OptionalPictures::OptionalPictures(std::string tool, std::string what, bool have_png)
    : tool_(std::move(tool)), what_(std::move(what)), have_png_(have_png) {}

bool OptionalPictures::enabled(std::ostream& warn) {
  if (have_png_) return true;
  if (!warned_) {
    std::fflush(stdout);  // after what the tool has printed so far, as print_warning does
    warn << tool_ << ": warning: this build has no libpng: " << what_
         << " not written (the rest of the output is; rebuild with libpng, Debian: libpng-dev, for pictures)"
         << std::endl;
    warned_ = true;
  }
  return false;
}

void require_png_output(const std::string& flag, const std::string& path, bool have_png) {
  if (!have_png)
    user_fail(flag, " ", path, ": this build has no libpng, so it writes no PNG pictures (rebuild with libpng, "
              "Debian: libpng-dev)");
}

}  // namespace ebm
