#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace capsnet {

/// Which part of a data set: the training or the test examples.
enum class Split { kTrain, kTest };

struct FolderSplit;

/// An image classification data set, its images held in memory (or, for a
/// folder too large for its cache, read from files on demand).
struct Dataset {
  at::Tensor images;  ///< uint8 [N, C, H, W]; undefined when folder->files streams them
  at::Tensor labels; ///< int64 [N]
  int64_t num_classes = 10; ///< K: labels are in [0, K)
  std::vector<std::string> class_names;  ///< empty: the class indices
  /// A folder data set's split (data/folder.h): files, statistics, identity.
  std::shared_ptr<const FolderSplit> folder;
  /// N, the number of examples.
  int64_t size() const { return labels.size(0); }
  /// The images' side (held or streamed).
  int64_t side() const;
  /// The images' channels (held or streamed).
  int64_t channels() const;
  /// uint8 [B, C, H, W] of the examples `indices` (int64 [B]).
  at::Tensor pixels(const at::Tensor& indices) const;
};

/// Loads one split of the registered data set `name` (data/registry.h) from
/// `dir` (empty: the data set's default directory). `limit` > 0 keeps the
/// first `limit` examples. Throws DataError naming the file, what is wrong
/// and, for missing files, how to get them.
Dataset load_dataset(const std::string& dir, Split split, const std::string& name = "mnist",
                     int64_t limit = 0);

/// Loads one split of an IDX data set from `dir` (train-images-idx3-ubyte and
/// train-labels-idx1-ubyte or t10k-*, each raw or with a .gz suffix) whose
/// labels are in [0, num_classes). `fetch_hint` ends the error for a missing
/// file; "DIR" in it stands for `dir`.
Dataset load_idx_dataset(const std::string& dir, Split split, int64_t num_classes,
                         const std::string& fetch_hint, int64_t limit = 0);

/// What a data set is, for a checkpoint to record: its size, classes and a
/// CRC-32 of its pixels and labels ("60000 images 28x28, 10 classes, crc 1a2b3c4d").
std::string data_identity(const Dataset& data);

/// zlib's CRC-32 of `size` bytes (any size).
uint32_t crc32_of(const void* bytes, size_t size);

/// Mean and standard deviation of MNIST's training pixels in [0, 1]: the
/// seed's transforms.Normalize((0.1307,), (0.3081,)).
constexpr double kMnistMean = 0.1307;
constexpr double kMnistStd = 0.3081;

/// uint8 [B, C, H, W] -> float [B, C, H, W] in [0, 1], then shifted at random
/// by up to `max_shift` pixels along each axis (zero padded; the paper's
/// augmentation), then standardised with kMnistMean/kMnistStd when `normalize`.
at::Tensor prepare_batch(const at::Tensor& images, int64_t max_shift, bool normalize,
                         std::mt19937_64& rng);

/// (x - kMnistMean) / kMnistStd: the seed's input convention, applied to
/// float pixels in [0, 1], in training, evaluation and inference alike.
at::Tensor standardize(const at::Tensor& unit_pixels);
/// (x - mean[c]) / std[c] for each channel c of float [B, C, H, W]; empty
/// vectors mean MNIST's (the overload above).
at::Tensor standardize(const at::Tensor& unit_pixels, const std::vector<double>& mean,
                       const std::vector<double>& std);

/// Translates each image by its own (dy, dx), drawn uniformly from
/// [-max_shift, max_shift]; pixels shifted in are zero.
/// Shapes: [B, C, H, W] -> [B, C, H, W].
at::Tensor random_shift(const at::Tensor& images, int64_t max_shift, std::mt19937_64& rng);

/// Translates image b by (dy[b], dx[b]) pixels, filling with zeros: two
/// gathers from the images padded by the largest shift, whatever the batch
/// size (a GPU step launches no kernel per image).
at::Tensor shift_images(const at::Tensor& images, const std::vector<int64_t>& dy,
                        const std::vector<int64_t>& dx);

/// `tensor` on `device`: itself when it is there already (nothing is
/// dispatched); from the CPU to a GPU through pinned memory and a copy that
/// does not wait, so that preparing a batch never stalls the host on the GPU.
at::Tensor on_device(const at::Tensor& tensor, c10::Device device);

} // namespace capsnet
