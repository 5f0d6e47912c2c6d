// libFuzzer target: reading a user's picture (PNG, JPEG, PGM/PPM, BMP, GIF;
// every other format refused before stb sees it) and preparing it as MNIST
// was made.
#include "capsnet/image/image.h"
#include "fuzz_util.h"

#include <cmath>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = capsnet::fuzz::scratch_path("image");
  capsnet::fuzz::write_file(path, data, size);
  try {
    const auto image = capsnet::read_image(path);
    const auto digit = capsnet::mnist_preprocess(image);
    if (digit.width != 28 || digit.height != 28) __builtin_trap();
    for (float v : digit.pixels) {
      if (!(v >= 0.0f && v <= 1.0f)) __builtin_trap(); // in [0, 1], not NaN
    }
  } catch (const capsnet::ImageError&) {
  }
  return 0;
}
