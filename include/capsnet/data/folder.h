#pragma once

// Folder data sets (--dataset folder): a user's own pictures, one sub-folder
// per class, as torchvision's ImageFolder and Keras's
// image_dataset_from_directory take them. docs/own-data.md.

#include "capsnet/data/dataset.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

namespace capsnet {

/// How a folder data set is read and prepared; part of TrainOptions ("folder").
struct FolderOptions {
  /// The share of each class held out for testing when DIR has no train/ and
  /// test/ folders: a stratified split drawn from the run's seed.
  double test_fraction = 0.1;
  /// 1 or 3; 0 (auto): 3 when any training picture shows colour (a channel
  /// differing from another by more than 4 levels in some pixel)
  int64_t channels = 0;
  int64_t image_size = 0;  ///< side pictures are resized to; 0 (auto): the median shorter side
  /// The network's input side: training takes a random crop of this size
  /// (with augment; the centre otherwise), testing the centre. 0: image_size.
  int64_t crop = 0;
  bool augment = false;  ///< random crops and horizontal flips in training
  /// Decoded images held in memory (uint8) per split, in MiB; the rest are
  /// decoded from their files for each batch by worker threads, ahead of time.
  int64_t cache_mb = 2048;
  bool strict = false;  ///< an unreadable file is an error rather than skipped
  /// Beyond the cache: threads decoding the next batch while one trains; 0:
  /// each batch decoded when it is needed, on the training thread.
  int64_t loader_threads = 2;

  /// The network's side: crop, or image_size when 0.
  int64_t input_side() const { return crop > 0 ? crop : image_size; }
  /// Throws std::invalid_argument naming the first out-of-range field.
  void validate() const;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(FolderOptions, test_fraction, channels, image_size,
                                                crop, augment, cache_mb, strict, loader_threads)

/// The file names this reader takes as pictures (lower-cased extensions).
bool has_picture_extension(const std::string& name);

/// One picture of a folder data set.
struct ImageFile {
  std::string path;  ///< relative to the folder: "train/cat/1.png" or "cat/1.png"
  int64_t label = 0; ///< the class: an index into FolderListing::classes
};

/// A folder's classes and the files of both splits, found by listing the
/// tree once (names, types, sizes and times; no file is opened).
struct FolderListing {
  std::string root;  ///< the folder listed, as given
  std::vector<std::string> classes;  ///< the class folders' names, sorted
  /// \var train
  /// The training split's pictures.
  /// \var test
  /// The test split's pictures.
  std::vector<ImageFile> train, test;
  bool split_folders = false;  ///< DIR/train and DIR/test; else DIR/CLASS split by the fraction
  std::string split;           ///< how the test split was made, for logs
  /// Files passed over while listing, each "path: why" (not a picture by its
  /// name, empty, a broken link, a link back into the tree).
  std::vector<std::string> skipped;
  /// What each split's files are: a CRC-32 of their names, sizes,
  /// modification times and labels (see docs/own-data.md for why not of their bytes).
  std::string train_identity, test_identity;
  /// \var test_identity
  /// The test split's identity, made as train_identity is.
};

/// Lists the folder `dir`: DIR/train/CLASS/... and DIR/test/CLASS/..., or
/// DIR/CLASS/... of which `test_fraction` of each class is held out
/// (stratified, drawn from `seed`) unless `test_files` (a checkpoint's
/// recorded split, relative paths) names the held-out files. Pictures may sit
/// in sub-folders of a class folder. Throws DataError naming the folder: no
/// such folder, fewer than two classes, a class without pictures, a class of
/// test/ missing from train/ or the other way, a recorded test file gone.
FolderListing list_image_folder(const std::string& dir, double test_fraction, uint64_t seed,
                                const std::vector<std::string>& test_files = {});

/// A folder split's pictures, decoded to uint8 [C, side, side]: the first
/// ones held in memory, the rest read from their files on demand by worker
/// threads, the next batch's while the current one trains (prefetch).
class ImageFiles {
 public:
  /// `paths` absolute; `cache` uint8 [K, C, side, side] holds the first K;
  /// `workers` threads decode ahead (0: load() decodes, prefetch() does nothing).
  ImageFiles(std::vector<std::string> paths, at::Tensor cache, int64_t channels, int64_t side,
             int workers = 2);
  ~ImageFiles();
  /// The number of pictures.
  int64_t size() const { return static_cast<int64_t>(paths_.size()); }
  /// How many of them (the first ones) are held in memory.
  int64_t cached() const { return cache_.size(0); }
  /// The pictures `indices` (int64 [B]) as uint8 [B, C, side, side]; throws
  /// DataError naming a file that can no longer be read.
  at::Tensor load(const at::Tensor& indices) const;
  /// Starts decoding `indices` on the worker threads; the next load() of the
  /// same indices takes the result.
  void prefetch(const at::Tensor& indices) const;

 private:
  at::Tensor decode(const std::vector<int64_t>& indices) const;
  std::vector<std::string> paths_;
  at::Tensor cache_;
  int64_t channels_, side_;
  int workers_;
  mutable std::mutex mutex_;
  mutable std::vector<int64_t> pending_indices_;
  mutable std::shared_future<at::Tensor> pending_;
};

/// What a folder split is, besides its images and labels (Dataset::folder).
struct FolderSplit {
  std::string root;                         ///< the folder, as given
  std::string identity;                     ///< the listing's identity of the split
  std::string split;                        ///< how the test split was made
  std::vector<std::string> test_files;      ///< the held-out files of a fraction split
  std::vector<std::string> skipped;         ///< "path: why", listing and decoding together
  /// \var side
  /// The stored images' side, in pixels (before any crop).
  int64_t side = 0, channels = 0;           ///< the stored images' (before any crop)
  /// \var mean
  /// The mean of each channel's pixels in [0, 1], over this split's pictures.
  std::vector<double> mean, std;            ///< per channel, pixels in [0, 1]
  std::shared_ptr<const ImageFiles> files;  ///< set when the split outgrew the cache
};

/// How a folder split is loaded.
struct FolderRequest {
  FolderOptions options;  ///< how the folder is read and prepared
  uint64_t seed = 1;  ///< the split's draw
  int64_t limit = 0;  ///< > 0: this many files, drawn across the classes from the seed
  std::vector<std::string> test_files;  ///< a recorded split (see list_image_folder)
  std::ostream* log = nullptr;          ///< the listing's summary and the skipped files
};

/// Loads `split` of the folder `dir`: lists it, resolves the automatic
/// channels and size from the training files' headers, decodes every picture
/// once (resized, converted, counted into the statistics), keeping what fits
/// in options.cache_mb. Unreadable files are skipped and listed on
/// request.log (an error with options.strict). Throws DataError.
Dataset load_folder(const std::string& dir, Split split, const FolderRequest& request);

}  // namespace capsnet
