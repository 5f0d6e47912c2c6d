#pragma once

// Reading, writing and MNIST-style preprocessing of single grayscale images
// (stb), and their conversion to tensors. Part of the capsnet_viz library.

#include <ATen/ATen.h>

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
  int width = 0;
  int height = 0;
  std::vector<float> pixels;

  GrayImage() = default;
  GrayImage(int w, int h, float fill = 0.0f) : width(w), height(h), pixels(size_t(w) * h, fill) {}
  float& at(int x, int y) { return pixels[size_t(y) * width + x]; }
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

/// float [H, W] or [1, H, W] in [0, 1] <-> GrayImage.
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
