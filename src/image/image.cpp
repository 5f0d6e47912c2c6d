#include "capsnet/image/image.h"

#include "capsnet/io/atomic_file.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

namespace capsnet {

namespace {

// The formats docs/inference.md promises, by their first bytes. stb_image decodes
// more (Radiance HDR, PSD, PIC, TGA), and Debian's stb 2.27 has known faults
// in those (CVE-2021-42715: an endless loop in HDR); they never reach it.
bool promised_format(const std::string& bytes) {
  auto starts = [&](std::initializer_list<unsigned char> magic) {
    if (bytes.size() < magic.size()) return false;
    return std::equal(magic.begin(), magic.end(),
                      reinterpret_cast<const unsigned char*>(bytes.data()));
  };
  return starts({0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}) || starts({0xff, 0xd8, 0xff}) ||
         starts({'P', '5'}) || starts({'P', '6'}) || starts({'B', 'M'}) ||
         starts({'G', 'I', 'F', '8'});
}

} // namespace

std::string read_image_bytes(const std::string& path, size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ImageError(path + ": no such file");
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw ImageError(path + ": not a regular file (a directory or a device); pass a picture file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw ImageError(path + ": cannot be read: " + ec.message());
  if (size == 0) throw ImageError(path + ": the file is empty");
  // A compressed image of kMaxImagePixels is far smaller than this.
  if (size > (uint64_t(1) << 30)) throw ImageError(path + ": the file is over 1 GiB");
  const auto wanted = max_bytes > 0 ? std::min<uint64_t>(size, max_bytes) : size;
  std::ifstream in(path, std::ios::binary);
  std::string bytes(wanted, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(wanted));
  if (!in) throw ImageError(path + ": cannot be read");
  return bytes;
}

GrayImage read_image(const std::string& path) {
  return decode_image(read_image_bytes(path), path);
}

namespace {

// The checks every decoder makes before stb sees the pixels; the header's
// size and channels.
PictureInfo checked_header(const std::string& bytes, const std::string& name, int* channels) {
  if (bytes.empty()) throw ImageError(name + ": the file is empty");
  if (!promised_format(bytes)) {
    throw ImageError(name + ": not an image this program reads: PNG, JPEG, PGM/PPM, BMP or GIF");
  }
  if (bytes.size() > size_t(std::numeric_limits<int>::max())) {
    throw ImageError(name + ": the file is too large");
  }
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  if (stbi_is_16_bit_from_memory(data, length)) {
    throw ImageError(name + ": 16-bit images are not supported; save it with 8 bits per channel");
  }
  int w = 0, h = 0;
  if (!stbi_info_from_memory(data, length, &w, &h, channels)) {
    throw ImageError(name + ": not an image this program reads (PNG, JPEG, PGM/PPM, BMP, GIF): " +
                     stbi_failure_reason());
  }
  if (w <= 0 || h <= 0) {
    throw ImageError(name + ": the image is " + std::to_string(w) + "x" + std::to_string(h));
  }
  if (int64_t(w) * h > kMaxImagePixels) {
    throw ImageError(name + ": " + std::to_string(w) + "x" + std::to_string(h) +
                     " pixels is too large (at most " + std::to_string(kMaxImagePixels) +
                     " pixels); scale it down first");
  }
  return {w, h, *channels >= 3};
}

}  // namespace

PictureInfo picture_info(const std::string& bytes, const std::string& name) {
  int channels = 0;
  return checked_header(bytes, name, &channels);
}

Picture decode_picture(const std::string& bytes, const std::string& name, int channels) {
  TORCH_CHECK(channels == 1 || channels == 3, "decode_picture: channels must be 1 or 3");
  int w = 0, h = 0, stored = 0;
  checked_header(bytes, name, &stored);
  const int with_alpha = channels + 1;
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                            static_cast<int>(bytes.size()), &w, &h, &stored, with_alpha),
      stbi_image_free);
  if (!pixels) throw ImageError(name + ": cannot decode the image: " + stbi_failure_reason());
  Picture out{w, h, channels, std::vector<uint8_t>(size_t(w) * h * channels)};
  const unsigned char* in = pixels.get();
  for (size_t i = 0; i < size_t(w) * h; ++i) {
    const int alpha = in[i * with_alpha + channels];
    for (int c = 0; c < channels; ++c) {
      // value * alpha + 255 * (1 - alpha), rounded, in integers
      const int v = in[i * with_alpha + c];
      out.pixels[i * channels + c] =
          static_cast<uint8_t>((v * alpha + 255 * (255 - alpha) + 127) / 255);
    }
  }
  return out;
}

GrayImage decode_image(const std::string& bytes, const std::string& name) {
  int w = 0, h = 0, channels = 0;
  checked_header(bytes, name, &channels);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load_from_memory(data, length, &w, &h, &channels, 2), stbi_image_free);
  if (!pixels) throw ImageError(name + ": cannot decode the image: " + stbi_failure_reason());
  GrayImage image(w, h);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const float gray = pixels.get()[2 * i] / 255.0f, alpha = pixels.get()[2 * i + 1] / 255.0f;
    image.pixels[i] = gray * alpha + (1.0f - alpha); // over white
  }
  return image;
}

namespace {

std::vector<unsigned char> png_bytes(const GrayImage& image) {
  std::vector<unsigned char> bytes(image.pixels.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<unsigned char>(std::lround(std::clamp(image.pixels[i], 0.0f, 1.0f) * 255));
  }
  return bytes;
}

void append_to_string(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
}

} // namespace

std::string encode_png(const GrayImage& image) {
  const auto bytes = png_bytes(image);
  std::string out;
  if (!stbi_write_png_to_func(append_to_string, &out, image.width, image.height, 1, bytes.data(),
                              image.width)) {
    throw ImageError("cannot encode a " + std::to_string(image.width) + "x" +
                     std::to_string(image.height) + " PNG");
  }
  return out;
}

void write_png(const std::string& path, const GrayImage& image) {
  write_file_atomically(path, encode_png(image));
}

namespace {

float median(std::vector<float> values) {
  auto mid = values.begin() + values.size() / 2;
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

// Resamples a `src_w` x `src_h` picture of `channels` interleaved channels to
// w x h: every output pixel is the mean of the source area it covers (exact
// for fractional overlaps, so that shrinking drops no pixel). read(u, v, c)
// gives a source value, write(x, y, c, mean) stores a result. The one
// resampler of both picture types: stb_image_resize's box filter is a
// trapezoid, not the exact area, at fractional ratios.
template <class Read, class Write>
void resample_area(int src_w, int src_h, int channels, int w, int h, Read read, Write write) {
  const double sx = double(src_w) / w, sy = double(src_h) / h;
  std::vector<double> sum(channels);
  for (int y = 0; y < h; ++y) {
    const double y0 = y * sy, y1 = (y + 1) * sy;
    for (int x = 0; x < w; ++x) {
      const double x0 = x * sx, x1 = (x + 1) * sx;
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int v = int(y0); v < std::min(src_h, int(std::ceil(y1))); ++v) {
        const double wy = std::min(y1, v + 1.0) - std::max(y0, double(v));
        for (int u = int(x0); u < std::min(src_w, int(std::ceil(x1))); ++u) {
          const double wx = std::min(x1, u + 1.0) - std::max(x0, double(u));
          for (int c = 0; c < channels; ++c) sum[c] += wx * wy * read(u, v, c);
        }
      }
      for (int c = 0; c < channels; ++c) write(x, y, c, sum[c] / (sx * sy));
    }
  }
}

GrayImage resample_gray(const GrayImage& src, int w, int h) {
  GrayImage out(w, h);
  resample_area(
      src.width, src.height, 1, w, h, [&](int u, int v, int) { return src.at(u, v); },
      [&](int x, int y, int, double mean) { out.at(x, y) = static_cast<float>(mean); });
  return out;
}

} // namespace

GrayImage mnist_preprocess(const GrayImage& image, int side, int box) {
  if (image.width <= 0 || image.height <= 0) throw ImageError("the image is empty");
  // Background: the median of the border pixels.
  std::vector<float> border;
  for (int x = 0; x < image.width; ++x) {
    border.push_back(image.at(x, 0));
    border.push_back(image.at(x, image.height - 1));
  }
  for (int y = 0; y < image.height; ++y) {
    border.push_back(image.at(0, y));
    border.push_back(image.at(image.width - 1, y));
  }
  const bool light_background = median(border) > 0.5f;
  GrayImage ink = image;
  if (light_background) {
    for (auto& p : ink.pixels) p = 1.0f - p;
  }
  const float background = light_background ? 1.0f - median(border) : median(border);
  const float top = *std::max_element(ink.pixels.begin(), ink.pixels.end());
  if (top - background < 0.1f) {
    throw ImageError("the image is blank: no digit stands out from the background");
  }
  for (auto& p : ink.pixels) p = std::clamp((p - background) / (top - background), 0.0f, 1.0f);

  // Bounding box of the ink.
  const float threshold = 0.1f;
  int x0 = ink.width, y0 = ink.height, x1 = -1, y1 = -1;
  for (int y = 0; y < ink.height; ++y) {
    for (int x = 0; x < ink.width; ++x) {
      if (ink.at(x, y) > threshold) {
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
    }
  }
  GrayImage crop(x1 - x0 + 1, y1 - y0 + 1);
  for (int y = 0; y < crop.height; ++y) {
    for (int x = 0; x < crop.width; ++x) crop.at(x, y) = ink.at(x0 + x, y0 + y);
  }

  const double scale = double(box) / std::max(crop.width, crop.height);
  const int w = std::clamp(int(std::lround(crop.width * scale)), 1, box);
  const int h = std::clamp(int(std::lround(crop.height * scale)), 1, box);
  const GrayImage digit = resample_gray(crop, w, h);

  // Centre of mass to pixel (side / 2, side / 2) in pixel indices: MNIST's own
  // digits average 14.00 and 13.99 there (first 2,000 test images).
  double mass = 0, cx = 0, cy = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      mass += digit.at(x, y);
      cx += x * digit.at(x, y);
      cy += y * digit.at(x, y);
    }
  }
  const int dx = int(std::lround(side / 2.0 - cx / mass));
  const int dy = int(std::lround(side / 2.0 - cy / mass));
  GrayImage out(side, side);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int tx = x + dx, ty = y + dy;
      if (tx >= 0 && tx < side && ty >= 0 && ty < side) out.at(tx, ty) = digit.at(x, y);
    }
  }
  return out;
}

at::Tensor prepare_digit_image(const GrayImage& picture, int64_t side) {
  const auto image = mnist_preprocess(picture, int(side), int(side * 20 / 28));
  return to_tensor(image).view({1, 1, image.height, image.width});
}

at::Tensor load_digit_image(const std::string& path, int64_t side) {
  return prepare_digit_image(read_image(path), side);
}

GrayImage to_gray_image(const at::Tensor& image) {
  auto t = image.detach().to(at::kFloat).contiguous();
  if (t.dim() == 3 && t.size(0) == 3) t = t.mean(0);  // a colour image drawn in grey
  if (t.dim() == 3) t = t.squeeze(0);
  TORCH_CHECK(t.dim() == 2, "expected an image of shape [H, W] or [1, H, W], got ", image.sizes());
  GrayImage out(int(t.size(1)), int(t.size(0)));
  std::copy(t.data_ptr<float>(), t.data_ptr<float>() + t.numel(), out.pixels.begin());
  return out;
}

at::Tensor to_tensor(const GrayImage& image) {
  return at::from_blob(const_cast<float*>(image.pixels.data()), {image.height, image.width},
                       at::kFloat)
      .clone();
}

namespace {

Picture resample_picture(const Picture& src, int w, int h) {
  Picture out{w, h, src.channels, std::vector<uint8_t>(size_t(w) * h * src.channels)};
  resample_area(
      src.width, src.height, src.channels, w, h,
      [&](int u, int v, int c) { return src.pixels[(size_t(v) * src.width + u) * src.channels + c]; },
      [&](int x, int y, int c, double mean) {
        out.pixels[(size_t(y) * w + x) * src.channels + c] =
            static_cast<uint8_t>(std::clamp(std::lround(mean), 0L, 255L));
      });
  return out;
}

}  // namespace

Picture centre_crop(const Picture& picture, int side) {
  TORCH_CHECK(picture.width >= side && picture.height >= side, "centre_crop: a ", picture.width,
              "x", picture.height, " picture has no ", side, "x", side, " centre");
  if (picture.width == side && picture.height == side) return picture;
  const int left = (picture.width - side) / 2, top = (picture.height - side) / 2;
  Picture out{side, side, picture.channels,
              std::vector<uint8_t>(size_t(side) * side * picture.channels)};
  const size_t row = size_t(side) * picture.channels;
  for (int y = 0; y < side; ++y) {
    std::copy_n(&picture.pixels[((size_t(top) + y) * picture.width + left) * picture.channels], row,
                &out.pixels[size_t(y) * row]);
  }
  return out;
}

Picture resize_and_crop(const Picture& picture, int side) {
  TORCH_CHECK(side > 0, "resize_and_crop: side must be positive");
  if (picture.width == side && picture.height == side) return picture;
  const double scale = double(side) / std::min(picture.width, picture.height);
  const int w = std::max(side, int(std::lround(picture.width * scale)));
  const int h = std::max(side, int(std::lround(picture.height * scale)));
  return centre_crop(resample_picture(picture, w, h), side);
}

at::Tensor picture_tensor(const Picture& picture) {
  return at::from_blob(const_cast<uint8_t*>(picture.pixels.data()),
                       {picture.height, picture.width, picture.channels}, at::kByte)
      .permute({2, 0, 1})
      .clone(at::MemoryFormat::Contiguous);  // a copy: the picture's memory may go first
}

Picture tensor_picture(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3),
              "expected an image [1 or 3, H, W], got ", image.sizes());
  auto bytes = image.detach().cpu();
  if (bytes.scalar_type() != at::kByte)
    bytes = bytes.to(at::kFloat).mul(255).round().clamp(0, 255).to(at::kByte);
  bytes = bytes.permute({1, 2, 0}).contiguous();
  Picture out{int(image.size(2)), int(image.size(1)), int(image.size(0)), {}};
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

std::string encode_png(const Picture& picture) {
  std::string out;
  if (!stbi_write_png_to_func(append_to_string, &out, picture.width, picture.height,
                              picture.channels, picture.pixels.data(),
                              picture.width * picture.channels)) {
    throw ImageError("cannot encode a " + std::to_string(picture.width) + "x" +
                     std::to_string(picture.height) + " PNG");
  }
  return out;
}

void write_png(const std::string& path, const Picture& picture) {
  write_file_atomically(path, encode_png(picture));
}

std::string encode_jpeg(const Picture& picture, int quality) {
  std::string out;
  if (!stbi_write_jpg_to_func(append_to_string, &out, picture.width, picture.height,
                              picture.channels, picture.pixels.data(), quality)) {
    throw ImageError("cannot encode a " + std::to_string(picture.width) + "x" +
                     std::to_string(picture.height) + " JPEG");
  }
  return out;
}

void write_jpeg(const std::string& path, const Picture& picture, int quality) {
  write_file_atomically(path, encode_jpeg(picture, quality));
}

} // namespace capsnet
