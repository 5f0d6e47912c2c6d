#pragma once

// Reading, writing and preprocessing of single images (stb): grayscale ones
// prepared as MNIST was made, and grey or colour pictures resized for the
// models of folder data sets; their conversion to tensors. Part of the core
// library (the folder data sets decode with it).

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace capsnet {

/// An image that cannot be read or used; the message names the file.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A grayscale image, row-major, values in [0, 1].
struct GrayImage {
  int width = 0;             ///< in pixels
  int height = 0;            ///< in pixels
  std::vector<float> pixels; ///< width * height values, row by row

  GrayImage() = default;
  /// A `w` x `h` image with every pixel `fill`.
  GrayImage(int w, int h, float fill = 0.0f) : width(w), height(h), pixels(size_t(w) * h, fill) {}
  /// The pixel in column `x` of row `y` (unchecked).
  float& at(int x, int y) { return pixels[size_t(y) * width + x]; }
  /// The pixel in column `x` of row `y` (unchecked).
  float at(int x, int y) const { return pixels[size_t(y) * width + x]; }
};

/// The largest image read_image accepts, in pixels (about 40 megapixels).
constexpr int64_t kMaxImagePixels = int64_t(1) << 25;

/// Reads a PNG, JPEG, PGM/PPM, BMP or GIF file as grayscale in [0, 1]
/// (transparent pixels are composited over white). Throws ImageError for a
/// missing, empty, truncated or unknown file, 0x0 images and ones larger than
/// kMaxImagePixels.
GrayImage read_image(const std::string& path);

/// read_image of a file's contents already in memory (an upload); `name`
/// goes into the messages.
GrayImage decode_image(const std::string& bytes, const std::string& name);

/// `image` as the bytes of an 8-bit grayscale PNG file.
std::string encode_png(const GrayImage& image);

/// Writes `image` as an 8-bit grayscale PNG; throws ImageError on failure.
void write_png(const std::string& path, const GrayImage& image);

/// Prepares a picture of one digit the way MNIST was made (LeCun et al.):
/// grayscale; inverted when the background (the border's median) is light;
/// stretched so that background is 0 and the strongest ink 1; cropped to the
/// digit's bounding box; scaled by area averaging to fit `box` x `box` keeping
/// the aspect ratio; placed in a `side` x `side` field with its centre of mass
/// at pixel (side / 2, side / 2), where MNIST's digits have theirs.
/// Throws ImageError("... blank ...") when no digit stands out.
GrayImage mnist_preprocess(const GrayImage& image, int side = 28, int box = 20);

/// A picture with 8-bit channels, 1 (grey) or 3 (RGB), row-major and interleaved.
struct Picture {
  int width = 0;    ///< in pixels
  int height = 0;   ///< in pixels
  int channels = 1; ///< 1 (grey) or 3 (RGB)
  std::vector<uint8_t> pixels;  ///< width * height * channels
};

/// What a picture file's header says, read without decoding the pixels.
struct PictureInfo {
  int width = 0;        ///< in pixels
  int height = 0;       ///< in pixels
  bool colour = false;  ///< stored as RGB or with a palette (not grey)
};

/// The bytes of a file for the image readers: refuses what is not a regular
/// file, an empty file and files over 1 GiB; `max_bytes` > 0 reads at most that
/// many (a header). Throws ImageError naming `path`.
std::string read_image_bytes(const std::string& path, size_t max_bytes = 0);

/// The header of a PNG, JPEG, PGM/PPM, BMP or GIF file already in memory (all
/// of it or its first bytes). Throws ImageError like decode_image.
PictureInfo picture_info(const std::string& bytes, const std::string& name);

/// Decodes a PNG, JPEG, PGM/PPM, BMP or GIF file already in memory (the same
/// checks as decode_image) as `channels` (1 or 3) channels: colour converted
/// to grey by stb's luma weights, grey repeated in each channel, transparent
/// pixels composited over white. Throws ImageError naming `name`.
Picture decode_picture(const std::string& bytes, const std::string& name, int channels);

/// Resizes `picture` so that its shorter side is `side` (area averaging, so
/// that no pixel is dropped when shrinking), then crops the centre `side` x
/// `side`. A picture already `side` x `side` is returned as it is.
Picture resize_and_crop(const Picture& picture, int side);

/// The centre `side` x `side` of a picture at least that large.
Picture centre_crop(const Picture& picture, int side);

/// Picture <-> uint8 [C, H, W]; a float tensor is taken as [0, 1] and rounded.
at::Tensor picture_tensor(const Picture& picture);
Picture tensor_picture(const at::Tensor& image);

/// `picture` as the bytes of an 8-bit PNG file (grey or RGB).
std::string encode_png(const Picture& picture);
/// Writes `picture` as an 8-bit PNG (atomically); throws ImageError on failure.
void write_png(const std::string& path, const Picture& picture);
/// `picture` as the bytes of a JPEG file of `quality` (1-100).
std::string encode_jpeg(const Picture& picture, int quality = 90);
/// Writes `picture` as a JPEG of `quality` (atomically); throws ImageError on failure.
void write_jpeg(const std::string& path, const Picture& picture, int quality = 90);

/// float [H, W] or [1, H, W] in [0, 1] <-> GrayImage ([3, H, W]: the
/// channels' mean, for figures of colour models).
GrayImage to_gray_image(const at::Tensor& image);
at::Tensor to_tensor(const GrayImage& image);

/// A picture of one digit prepared as MNIST was made (mnist_preprocess) for a
/// network taking `side` x `side` images: float [1, 1, side, side] in [0, 1].
/// Throws ImageError.
at::Tensor prepare_digit_image(const GrayImage& picture, int64_t side = 28);

/// Reads a picture of one digit (read_image) and prepares it as MNIST was made
/// (mnist_preprocess) for a network taking `side` x `side` images:
/// float [1, 1, side, side] in [0, 1]. Throws ImageError.
at::Tensor load_digit_image(const std::string& path, int64_t side = 28);

} // namespace capsnet
