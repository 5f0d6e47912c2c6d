#pragma once

#include "capsnet/data/idx_reader.h"
#include "capsnet/model/capsnet.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/utils.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace capsnet::testing {

/// A fresh, empty directory under the system's temp dir, named after `tag`.
inline std::string temp_dir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("capsnet-test-" + tag + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// Writes a data set of `n` random `side`x`side` images with labels k % classes
/// in IDX format (train and t10k files) into `dir`.
inline void write_tiny_dataset(const std::string& dir, int64_t n, int64_t side, bool gzip = false,
                               uint32_t seed = 7) {
  std::srand(seed);
  for (const std::string prefix : {"train", "t10k"}) {
    IdxArray images{{n, side, side}, {}};
    IdxArray labels{{n}, {}};
    for (int64_t k = 0; k < n; ++k) {
      labels.data.push_back(static_cast<uint8_t>(k % 10));
      // A class-dependent bright bar plus noise, so that the classes can be learned.
      for (int64_t p = 0; p < side * side; ++p) {
        const int64_t row = p / side;
        const bool bar = row == (k % 10) * side / 10;
        images.data.push_back(static_cast<uint8_t>(bar ? 200 + std::rand() % 56 : std::rand() % 40));
      }
    }
    const std::string ext = gzip ? ".gz" : "";
    write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images, gzip);
    write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels, gzip);
  }
}

/// A CapsNet small enough for finite differences and quick training:
/// 12x12 input, 3 conv1 channels, 2 primary types of 4-D capsules on a 4x4
/// grid (32 capsules), 10 classes of 4-D digit capsules, decoder 40 -> 8 -> 144.
inline CapsNetConfig tiny_config() {
  CapsNetConfig c;
  c.image_size = 12;
  c.conv1_channels = 3;
  c.conv1_kernel = 3;
  c.primary_types = 2;
  c.primary_dim = 4;
  c.primary_kernel = 3;
  c.primary_stride = 2;
  c.num_classes = 10;
  c.digit_dim = 4;
  c.decoder_hidden = {8};
  c.w_init_std = 0.5;
  return c;
}

/// Central finite differences, in double, of the scalar `loss()` with respect
/// to up to `max_elements` elements of each tensor in `inputs`, compared with
/// autograd's gradient. Returns the largest error relative to max(1, |grad|).
inline double max_gradient_error(const std::function<at::Tensor()>& loss,
                                 std::vector<at::Tensor> inputs, int64_t max_elements = 40,
                                 double eps = 1e-6) {
  for (auto& t : inputs) {
    if (t.grad().defined()) t.mutable_grad().zero_();
  }
  loss().backward();
  double worst = 0;
  for (auto& t : inputs) {
    auto grad = t.grad().contiguous();
    auto flat = t.data().view({-1});
    const int64_t n = flat.numel();
    const int64_t stride = std::max<int64_t>(1, n / max_elements);
    c10::AutoGradMode no_grad(false);
    for (int64_t k = 0; k < n; k += stride) {
      const double saved = flat[k].item<double>();
      flat[k] = saved + eps;
      const double plus = loss().item<double>();
      flat[k] = saved - eps;
      const double minus = loss().item<double>();
      flat[k] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic = grad.view({-1})[k].item<double>();
      worst = std::max(worst, std::abs(numeric - analytic) / std::max(1.0, std::abs(analytic)));
    }
  }
  return worst;
}

} // namespace capsnet::testing
