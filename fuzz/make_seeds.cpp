// Writes the seed corpora from real files: the first MNIST test digits as IDX
// (raw, gzip), PNG, JPEG, BMP, PGM and PPM, and the options of both presets.
// Usage: make_seeds MNIST_DIR OUT_DIR (OUT_DIR/{idx,image,options} exist).
#include "capsnet/data/idx_reader.h"
#include "capsnet/registry/options.h"

#include <nlohmann/json.hpp>
#include <stb_image_write.h>

#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds MNIST_DIR OUT_DIR\n";
    return 2;
  }
  const std::string mnist = argv[1], out = argv[2];
  const auto images = capsnet::read_idx(mnist + "/t10k-images-idx3-ubyte", 3);
  const auto labels = capsnet::read_idx(mnist + "/t10k-labels-idx1-ubyte", 1);
  const int64_t n = 2, side = images.dims[1];
  capsnet::IdxArray few{{n, side, side}, {images.data.begin(), images.data.begin() + n * side * side}};
  capsnet::IdxArray few_labels{{32}, {labels.data.begin(), labels.data.begin() + 32}};
  // The fuzz target's first byte chooses raw (even) or gzip (odd) delivery.
  for (const auto& [name, array] : {std::pair{"images", few}, std::pair{"labels", few_labels}}) {
    capsnet::write_idx(out + "/idx/" + name + ".idx", array);
    std::ifstream raw(out + "/idx/" + name + ".idx", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(raw)), {});
    std::ofstream(out + "/idx/" + name + "-as-raw", std::ios::binary) << '\x00' << bytes;
    std::ofstream(out + "/idx/" + name + "-as-gzip", std::ios::binary) << '\x01' << bytes;
    capsnet::write_idx(out + "/idx/" + name + ".idx.gz", array, /*gzip=*/true);
    std::ifstream gz(out + "/idx/" + name + ".idx.gz", std::ios::binary);
    const std::string packed((std::istreambuf_iterator<char>(gz)), {});
    std::ofstream(out + "/idx/" + name + "-gz-as-raw", std::ios::binary) << '\x00' << packed;
  }
  const auto* digit = images.data.data(); // the first test digit, a 7
  const int s = static_cast<int>(side);
  stbi_write_png((out + "/image/digit.png").c_str(), s, s, 1, digit, s);
  stbi_write_jpg((out + "/image/digit.jpg").c_str(), s, s, 1, digit, 90);
  stbi_write_bmp((out + "/image/digit.bmp").c_str(), s, s, 1, digit);
  std::ofstream pgm(out + "/image/digit.pgm", std::ios::binary);
  pgm << "P5\n" << s << " " << s << "\n255\n";
  pgm.write(reinterpret_cast<const char*>(digit), s * s);
  std::ofstream ppm(out + "/image/digit.ppm", std::ios::binary);
  ppm << "P6\n" << s << " " << s << "\n255\n";
  for (int i = 0; i < s * s; ++i) ppm << digit[i] << digit[i] << digit[i];
  for (const auto* preset : {"paper", "seed"}) {
    std::ofstream(out + "/options/" + preset + ".json")
        << nlohmann::json(capsnet::preset_options(preset)).dump(2);
  }
  return 0;
}
