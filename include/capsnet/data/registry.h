#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace capsnet {

/// What capsnet knows about a data set; the one list of them. To add a data
/// set, add an entry in registry.cpp (README, "Adding a data set").
struct DatasetInfo {
  std::string name;        ///< what --dataset takes: "mnist"
  std::string description; ///< one line for help texts
  std::string default_dir; ///< where its files are when --data is not given
  std::string fetch_hint;  ///< how to get the files (part of "not found" errors)
  int64_t image_size = 28; ///< square images
  int64_t channels = 1;
  int64_t num_classes = 10;
  int64_t labels_per_image = 1; ///< MultiMNIST: 2
  /// Loads `split` from `dir`, the first `limit` examples when > 0.
  std::function<Dataset(const std::string& dir, Split split, int64_t limit)> load;
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
                                         int64_t shift, bool normalize, c10::Device device);

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
