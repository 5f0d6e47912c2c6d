#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/data/folder.h"

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace capsnet {

/// What a load of one split asks for.
struct DataRequest {
  std::string dir;  ///< empty: the data set's default directory
  Split split = Split::kTrain;  ///< which split to load
  int64_t limit = 0;     ///< > 0: the first `limit` examples (a folder: drawn across its classes)
  FolderOptions folder;  ///< how a folder data set is read
  uint64_t seed = 1;     ///< a folder's test split is drawn from it
  std::vector<std::string> test_files;  ///< a folder's recorded test split
  std::ostream* log = nullptr;          ///< what a folder's listing found
};

/// How a split's examples are prepared for the model.
struct SourceOptions {
  int64_t shift = 0;              ///< random translation in training, up to this many pixels
  bool normalize = false;         ///< standardise with mean and std
  /// \var mean
  /// The mean of each channel's pixels in [0, 1] that normalize subtracts.
  std::vector<double> mean, std;  ///< per channel; empty: MNIST's
  int64_t crop =
      0;  ///< > 0: the model's side; random crops in training with augment, else the centre
  bool augment = false;  ///< random crops and horizontal flips in training
  /// Efficient-CapsNet's rotation, shift, squish and erase in training (data/digit_augment.h).
  bool digit_augment = false;
};

/// What capsnet knows about a data set; the one list of them. To add a data
/// set, add an entry in registry.cpp (docs/architecture.md, "Adding a data set").
struct DatasetInfo {
  std::string name;        ///< what --dataset takes: "mnist"
  std::string description; ///< one line for help texts
  std::string default_dir; ///< where its files are when --data is not given
  std::string fetch_hint;  ///< how to get the files (part of "not found" errors)
  int64_t image_size = 28; ///< square images
  int64_t channels = 1;    ///< channels of the images
  int64_t num_classes = 10; ///< K: labels are in [0, K)
  int64_t labels_per_image = 1; ///< MultiMNIST: 2
  std::vector<std::string> class_names;  ///< empty: the class indices (or the folder's names)
  bool folder = false;  ///< a user's folder: its size, channels and classes come from the files
  /// Loads request.split from request.dir (never empty here).
  std::function<Dataset(const DataRequest& request)> load;
  /// Makes the batches of a loaded split (image_size x image_size); empty: a
  /// DatasetSource (the training split shifted by `shift`, the test split not).
  /// Generated data sets (MultiMNIST, framed and affine digits) put their own
  /// generator here; their test sets are fixed by kTestSetSeed.
  std::function<std::unique_ptr<BatchSource>(Dataset data, Split split, int64_t shift,
                                             bool normalize)>
      source;
};

/// The seed of every generated test set, so that runs and models are compared
/// on the same examples.
constexpr uint64_t kTestSetSeed = 20171026;

/// `split` of a loaded data set as batches on `device` (see DatasetInfo::source).
std::unique_ptr<BatchSource> make_source(const DatasetInfo& info, Dataset data, Split split,
                                         const SourceOptions& options, c10::Device device);
/// The same with a shift and MNIST's standardisation only.
std::unique_ptr<BatchSource> make_source(const DatasetInfo& info, Dataset data, Split split,
                                         int64_t shift, bool normalize, c10::Device device);

/// Loads a split of the registered data set `name`; throws DataError.
Dataset load_dataset(const std::string& name, DataRequest request);

/// Throws std::invalid_argument, naming both sizes, unless the examples
/// make_source makes of `data` are `model_side` pixels square.
void require_image_size(const DatasetInfo& info, const Dataset& data, int64_t model_side);

/// Every registered data set, in the order help texts list them.
const std::vector<DatasetInfo>& registered_datasets();
/// The names, for CLI11's IsMember and messages.
std::vector<std::string> dataset_names();
/// The entry called `name`; throws DataError listing the known names.
const DatasetInfo& dataset_info(const std::string& name);

} // namespace capsnet
