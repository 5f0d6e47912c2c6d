#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <random>
#include <string>

namespace capsnet {

enum class Split { kTrain, kTest };

/// An image classification data set held in memory.
struct Dataset {
  at::Tensor images; ///< uint8 [N, 1, H, W]
  at::Tensor labels; ///< int64 [N]
  int64_t num_classes = 10;
  int64_t size() const { return labels.size(0); }
};

/// The data sets `load_dataset` knows: "mnist" and "fashion-mnist".
bool is_known_dataset(const std::string& name);

/// Where a data set lives when --data is not given: data/mnist for MNIST,
/// Debian's /usr/share/datasets/fashion-mnist for Fashion-MNIST.
std::string default_data_dir(const std::string& name);

/// Loads one split of an IDX data set from `dir` (train-images-idx3-ubyte and
/// train-labels-idx1-ubyte or t10k-*, each raw or with a .gz suffix).
/// `limit` > 0 keeps the first `limit` examples. Throws DataError naming the
/// file, what is wrong and, for missing files, the command that fetches them.
Dataset load_dataset(const std::string& dir, Split split, const std::string& name = "mnist",
                     int64_t limit = 0);

/// Mean and standard deviation of MNIST's training pixels in [0, 1]: the
/// seed's transforms.Normalize((0.1307,), (0.3081,)).
constexpr double kMnistMean = 0.1307;
constexpr double kMnistStd = 0.3081;

/// uint8 [B, C, H, W] -> float [B, C, H, W] in [0, 1], then shifted at random
/// by up to `max_shift` pixels along each axis (zero padded; the paper's
/// augmentation), then standardised with kMnistMean/kMnistStd when `normalize`.
at::Tensor prepare_batch(const at::Tensor& images, int64_t max_shift, bool normalize,
                         std::mt19937_64& rng);

/// Translates each image by its own (dy, dx), drawn uniformly from
/// [-max_shift, max_shift]; pixels shifted in are zero.
/// Shapes: [B, C, H, W] -> [B, C, H, W].
at::Tensor random_shift(const at::Tensor& images, int64_t max_shift, std::mt19937_64& rng);

/// Translates image b by (dy[b], dx[b]) pixels, filling with zeros.
at::Tensor shift_images(const at::Tensor& images, const std::vector<int64_t>& dy,
                        const std::vector<int64_t>& dx);

} // namespace capsnet
