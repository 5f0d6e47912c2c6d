#pragma once

// The test split a checkpoint is evaluated on, as eval, predict's figures and
// the experiments read it: the run's own data unless told otherwise, prepared
// as the model's data was.

#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/data/shape.h"
#include "capsnet/registry/options.h"

#include <cstdint>
#include <ostream>
#include <string>

namespace capsnet {

/// The directory load_test_split reads: `data_dir` when given, else the
/// default directory of `dataset` when given, else the run's own data
/// (options.data_dir, or its data set's default).
std::string test_data_dir(const TrainOptions& options, const std::string& data_dir,
                          const std::string& dataset);

/// The test split a checkpoint of `options` is evaluated on (test_data_dir),
/// its first `limit` examples (0: all). `options.dataset` becomes `dataset`
/// when that is not empty. `trained`: the checkpoint's data shape (a folder's
/// size, channels and recorded split). A folder's listing is summarised on
/// `log` (null: nowhere). Throws DataError.
Dataset load_test_split(TrainOptions& options, const std::string& data_dir,
                        const std::string& dataset, int64_t limit, const DataShape& trained,
                        std::ostream* log = nullptr);

/// The first `limit` (0: all) examples of a loaded test split as a model
/// sees them, before any standardisation: images float [N, C, S, S] in [0, 1]
/// (a generated data set's fixed test set: MultiMNIST's pairs, framed or
/// transformed digits), labels [N] or [N, P], the decoder's targets. Throws
/// std::invalid_argument when S is not the model's input size.
Batch test_examples(const TrainOptions& options, const Dataset& data, int64_t limit,
                    const DataShape& trained);

} // namespace capsnet
