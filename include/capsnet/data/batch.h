#pragma once

#include "capsnet/data/dataset.h"

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

namespace capsnet {

/// One batch as a model and its objective consume it.
struct Batch {
  at::Tensor images;  ///< float [B, C, H, W], as the model takes them
  at::Tensor labels;  ///< int64: [B] (one class per image) or [B, P] (P classes each)
  at::Tensor targets; ///< float [B, K] multi-hot: T_k of Eq. 4, 1 for each class present
  /// What the decoder should reproduce for each entry of `labels`: [B, C, H, W]
  /// (one label) or [B, P, C, H, W]. For MNIST, the input image itself.
  at::Tensor recon_targets;
  /// B, the number of examples.
  int64_t size() const { return images.size(0); }
  /// Examples [begin, begin + count) of this batch.
  Batch narrow(int64_t begin, int64_t count) const;
};

/// splitmix64: decorrelates the seeds of streams derived from one seed
/// (epochs, steps, generated examples).
uint64_t splitmix64(uint64_t x);

/// The random stream of generated example `index` of a fixed set made from
/// `seed` (MultiMNIST's and the affine test's).
std::mt19937_64 example_stream(uint64_t seed, int64_t index);

/// labels int64 [B] or [B, P] -> float [B, K] with a 1 at each label.
at::Tensor multi_hot(const at::Tensor& labels, int64_t num_classes);

/// Where the trainer and evaluation get examples: any data, any number of
/// labels per image. Implementations must be deterministic given `rng`.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0; ///< number of examples
  /// K, the number of classes: labels are in [0, K).
  virtual int64_t num_classes() const = 0;
  /// The examples `indices` (int64 [B], on any device) as one batch.
  /// `rng` drives augmentation; null means none (evaluation).
  virtual Batch get(const at::Tensor& indices, std::mt19937_64* rng) const = 0;
  /// A hint that get() of `indices` comes next: a source that reads files
  /// starts on them now. The default does nothing.
  virtual void prefetch(const at::Tensor& indices) const {}
};

struct SourceOptions;

/// An image classification data set (MNIST, Fashion-MNIST, a folder): pixels
/// scaled to [0, 1], cropped to SourceOptions::crop (at random with augment
/// when training, else the centre), flipped left-right at random (augment),
/// augmented as Efficient-CapsNet's digits (digit_augment) and shifted at
/// random by up to `shift` pixels when training (the paper's only
/// augmentation), standardised when `normalize`. The decoder's target is the
/// image as the model sees it. On a GPU, get() reads nothing back: the digit
/// augmentation runs on the CPU before one copy that does not wait, the rest
/// on the device.
class DatasetSource : public BatchSource {
 public:
  /// Moves the data to `device` once (MNIST is 55 MB as bytes); a folder too
  /// large for its cache stays on its files. `options` apply as given (the
  /// caller turns the augmentation off for test splits).
  DatasetSource(Dataset data, const SourceOptions& options,
                c10::Device device = c10::Device(c10::kCPU));
  /// Shifts of up to `max_shift` pixels and MNIST's standardisation only.
  DatasetSource(Dataset data, int64_t max_shift, bool normalize,
                c10::Device device = c10::Device(c10::kCPU));
  int64_t size() const override { return data_.size(); }
  int64_t num_classes() const override { return data_.num_classes; }
  Batch get(const at::Tensor& indices, std::mt19937_64* rng) const override;
  void prefetch(const at::Tensor& indices) const override;
  /// The data set this source serves.
  const Dataset& data() const { return data_; }

 private:
  Dataset data_;
  /// The pixels on the CPU as well, for the digit augmentation (undefined
  /// when the data are there already or it is off).
  at::Tensor host_images_;
  int64_t max_shift_, crop_;
  bool normalize_, augment_, digit_augment_;
  std::vector<double> mean_, std_;
  c10::Device device_;
};

/// Some examples of another source, renumbered 0..n-1: a training split
/// without its validation examples, or the validation examples alone. Both
/// share the one source that holds the data.
class SubsetSource : public BatchSource {
 public:
  /// `indices`: examples of `whole`, each in [0, whole->size()).
  SubsetSource(std::shared_ptr<const BatchSource> whole, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int64_t num_classes() const override { return whole_->num_classes(); }
  Batch get(const at::Tensor& indices, std::mt19937_64* rng) const override;
  void prefetch(const at::Tensor& indices) const override;

 private:
  at::Tensor map(const at::Tensor& indices) const;
  std::shared_ptr<const BatchSource> whole_;
  std::vector<int64_t> indices_;
  at::Tensor table_; ///< indices_ as int64 [n], on the CPU
};

/// `count` examples held out of a data set whose first label per example is
/// `labels` (int64 [N] or [N, P]), stratified: each class gives its share,
/// rounded so that the shares add up to `count` (largest remainders first),
/// the examples of each class drawn from `seed`. Sorted. Throws
/// std::invalid_argument unless 0 <= count < N.
std::vector<int64_t> stratified_holdout(const at::Tensor& labels, int64_t count, uint64_t seed);

/// [0, n) without `removed` (sorted, each in range), in order.
std::vector<int64_t> complement(int64_t n, const std::vector<int64_t>& removed);

/// Crops images float [B, C, S, S] to [B, C, side, side]: at offsets drawn
/// from `rng` when given, else the centre.
at::Tensor crop_images(const at::Tensor& images, int64_t side, std::mt19937_64* rng);

/// Mirrors each image left-right with probability 1/2, drawn from `rng`.
at::Tensor random_flip(const at::Tensor& images, std::mt19937_64& rng);

/// Which examples form each step: one permutation of the data per epoch and
/// one random stream per step, both derived from (seed, epoch, step) alone,
/// so that a resumed run draws exactly what an uninterrupted one does.
class EpochSampler {
 public:
  /// `size` examples in batches of `batch_size` (both positive), drawn from `seed`.
  EpochSampler(int64_t size, int64_t batch_size, uint64_t seed);
  virtual ~EpochSampler() = default;
  /// Batches per epoch, the last one possibly short.
  int64_t steps_per_epoch() const { return (size_ + batch_size_ - 1) / batch_size_; }
  /// Examples in the data set.
  int64_t size() const { return size_; }
  /// Examples per (global) batch.
  int64_t batch_size() const { return batch_size_; }
  /// The examples of step `step` of epoch `epoch` that this process trains
  /// on: int64 [B] (fewer at the end of an epoch); all of them here, one
  /// rank's slice in ShardedSampler.
  virtual at::Tensor indices(int64_t epoch, int64_t step) const;
  /// The whole (global) batch of that step, whatever the rank.
  at::Tensor global_indices(int64_t epoch, int64_t step) const;
  /// Which part [first, first + second) of a global batch of n examples this
  /// process trains on: all of it here.
  virtual std::pair<int64_t, int64_t> shard(int64_t n) const { return {0, n}; }
  /// The random stream of that step (shifts, any augmentation).
  std::mt19937_64 step_rng(int64_t epoch, int64_t step) const;

 private:
  int64_t size_, batch_size_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> order_;
};

/// One process's part of every batch in data-parallel training: the same
/// permutation as EpochSampler, rank r of `world` taking the r-th contiguous
/// slice of each global batch (the first ranks one example more when the
/// batch does not divide evenly). The union over ranks is the global batch.
/// The Trainer draws the global batch's augmentation before slicing it, so
/// that N ranks see exactly what one process at the global batch sees.
class ShardedSampler : public EpochSampler {
 public:
  /// Rank `rank` of `world` (0 <= rank < world) over batches of `global_batch_size`.
  ShardedSampler(int64_t size, int64_t global_batch_size, uint64_t seed, int64_t rank,
                 int64_t world);
  at::Tensor indices(int64_t epoch, int64_t step) const override;
  std::pair<int64_t, int64_t> shard(int64_t n) const override;

 private:
  int64_t rank_, world_;
};

} // namespace capsnet
