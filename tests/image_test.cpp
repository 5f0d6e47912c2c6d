#include "capsnet/image/image.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>

namespace capsnet {
namespace {

// A light-background photo of a dark bar: 100 wide, 60 high, the bar 10 wide
// and 40 high with its top-left corner at (70, 5).
GrayImage dark_bar_on_light() {
  GrayImage image(100, 60, 0.9f);
  for (int y = 5; y < 45; ++y) {
    for (int x = 70; x < 80; ++x) image.at(x, y) = 0.1f;
  }
  return image;
}

TEST(MnistPreprocess, InvertsCropsScalesAndCentres) {
  const auto out = mnist_preprocess(dark_bar_on_light());
  ASSERT_EQ(out.width, 28);
  ASSERT_EQ(out.height, 28);
  // Inverted and stretched: background 0, ink 1.
  EXPECT_FLOAT_EQ(out.at(0, 0), 0.0f);
  EXPECT_FLOAT_EQ(out.at(14, 14), 1.0f);
  // 40 high -> 20 rows, 10 wide -> 5 columns, centred on (14, 14).
  int rows = 0, cols = 0;
  double mass = 0, cx = 0, cy = 0;
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      mass += out.at(x, y);
      cx += x * out.at(x, y);
      cy += y * out.at(x, y);
    }
  }
  for (int y = 0; y < 28; ++y) rows += out.at(14, y) > 0.5f;
  for (int x = 0; x < 28; ++x) cols += out.at(x, 14) > 0.5f;
  EXPECT_EQ(rows, 20);
  EXPECT_EQ(cols, 5);
  EXPECT_NEAR(cx / mass, 14.0, 0.5);
  EXPECT_NEAR(cy / mass, 14.0, 0.5);
  EXPECT_NEAR(mass, 20 * 5, 1e-3); // area averaging keeps the ink's mean
}

TEST(MnistPreprocess, KeepsDarkBackgroundsAndUpscalesSmallDigits) {
  GrayImage image(9, 9, 0.0f);
  for (int y = 2; y < 6; ++y) image.at(4, y) = 1.0f; // a 1x4 stroke
  const auto out = mnist_preprocess(image);
  int rows = 0;
  for (int y = 0; y < 28; ++y) rows += out.at(14, y) > 0.5f || out.at(13, y) > 0.5f;
  EXPECT_EQ(rows, 20);
  EXPECT_FLOAT_EQ(out.at(0, 0), 0.0f);
}

TEST(MnistPreprocess, RejectsBlankImages) {
  EXPECT_THROW(mnist_preprocess(GrayImage(30, 30, 0.7f)), ImageError);
  EXPECT_THROW(mnist_preprocess(GrayImage()), ImageError);
}

TEST(Png, WrittenImagesReadBackTheSame) {
  const auto dir = testing::temp_dir("png");
  GrayImage image(7, 5);
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 7; ++x) image.at(x, y) = float((x * 5 + y) % 11) / 10.0f;
  }
  write_png(dir + "/a.png", image);
  const auto back = read_image(dir + "/a.png");
  ASSERT_EQ(back.width, 7);
  ASSERT_EQ(back.height, 5);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    EXPECT_NEAR(back.pixels[i], image.pixels[i], 0.5 / 255 + 1e-6);
  }
}

TEST(ReadImage, ReadsPgm) {
  const auto dir = testing::temp_dir("pgm");
  std::ofstream(dir + "/a.pgm", std::ios::binary) << "P5\n3 2\n255\n" << std::string("\x00\x80\xff\x10\x20\x30", 6);
  const auto image = read_image(dir + "/a.pgm");
  ASSERT_EQ(image.width, 3);
  ASSERT_EQ(image.height, 2);
  EXPECT_FLOAT_EQ(image.at(2, 0), 1.0f);
  EXPECT_NEAR(image.at(1, 0), 128 / 255.0, 1e-6);
}

// read_image's error message for `path`, or "no error".
std::string message_of(const std::string& path) {
  try {
    read_image(path);
  } catch (const ImageError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ReadImage, NamesTheProblem) {
  const auto dir = testing::temp_dir("badimg");
  EXPECT_NE(message_of(dir + "/missing.png").find("no such file"), std::string::npos);
  std::ofstream(dir + "/empty.png").close();
  EXPECT_NE(message_of(dir + "/empty.png").find("empty"), std::string::npos);
  std::ofstream(dir + "/text.png") << "this is not an image\n";
  EXPECT_NE(message_of(dir + "/text.png").find("not an image"), std::string::npos);
  // A PGM header claiming 100000 x 100000 pixels: refused before decoding.
  std::ofstream(dir + "/huge.pgm", std::ios::binary) << "P5\n100000 100000\n255\n" << std::string(64, '\0');
  EXPECT_NE(message_of(dir + "/huge.pgm").find("too large"), std::string::npos);
  // 0 x 0.
  std::ofstream(dir + "/zero.pgm", std::ios::binary) << "P5\n0 0\n255\n";
  const auto zero = message_of(dir + "/zero.pgm");
  EXPECT_NE(zero, "no error");
  EXPECT_NE(zero.find("zero.pgm"), std::string::npos);
}

TEST(ReadImage, OnlyThePromisedFormatsAreDecoded) {
  // stb decodes Radiance HDR, PSD, PIC and TGA too; Debian's 2.27 hangs on a
  // crafted HDR file (CVE-2021-42715). They are refused before stb sees them.
  const auto dir = testing::temp_dir("formats");
  const std::pair<const char*, std::string> refused[] = {
      {"hdr.hdr", std::string("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n") +
                      std::string("\x02\x02\x00\x02\x80\x00\x00\x00", 8)},
      {"psd.psd", std::string("8BPS\x00\x01", 6) + std::string(40, '\0')},
      {"pic.pic", std::string("\x53\x80\xF6\x34", 4) + std::string(100, '\0')},
      {"tga.tga", std::string("\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x00\x18\x00", 18) +
                      std::string(12, '\x7f')},
  };
  for (const auto& [name, bytes] : refused) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    const auto message = message_of(dir + "/" + name);
    EXPECT_NE(message.find("PNG, JPEG, PGM/PPM, BMP or GIF"), std::string::npos)
        << name << ": " << message;
  }
  // 16-bit PGM (CVE-2021-42716's over-read): refused with the reason.
  std::ofstream(dir + "/deep.pgm", std::ios::binary) << "P5\n2 2\n65535\n" << std::string(8, '\x10');
  EXPECT_NE(message_of(dir + "/deep.pgm").find("16-bit"), std::string::npos);
  // A directory or a device is not a picture.
  EXPECT_NE(message_of(dir).find("not a regular file"), std::string::npos);
  EXPECT_NE(message_of("/dev/zero").find("not a regular file"), std::string::npos);
  // The promised ones still load: PGM (above), PNG (written here).
  write_png(dir + "/ok.png", GrayImage(3, 3, 0.5f));
  EXPECT_EQ(read_image(dir + "/ok.png").width, 3);
}

} // namespace
} // namespace capsnet
