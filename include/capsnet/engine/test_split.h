#pragma once

// The test split a checkpoint is evaluated on, as eval, predict's figures and
// the experiments read it: the run's own data unless told otherwise, prepared
// as the model's data was.

#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/data/shape.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/registry/options.h"

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

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

/// Before any work: none of `outputs` (empty: not asked for) is the
/// checkpoint or a file of the test data directory it would be evaluated on
/// (test_data_dir), and no two are the same file (check_outputs).
void check_outputs_against(const std::vector<std::string>& outputs, const std::string& checkpoint,
                           const TrainOptions& options, const std::string& data_dir,
                           const std::string& dataset);

/// What `capsnet eval` asks: a checkpoint file on its test split.
struct CheckpointEvalRequest {
  std::string checkpoint; ///< the checkpoint file's path
  /// The test data's directory; empty: the run's (test_data_dir).
  std::string data_dir, dataset; ///< empty: the run's (test_data_dir)
  int64_t batch_size = 500; ///< images per evaluation batch
  int64_t limit = 0; ///< the first N test examples (0: all)
  RoutingImpl routing = RoutingImpl::kFused;   ///< how the routing runs
  c10::Device device = c10::Device(c10::kCPU); ///< where the network runs
  Precision precision = Precision::kFp32;      ///< the network's arithmetic
  bool confusion = false;           ///< a confusion matrix is wanted (one label per image)
  std::vector<std::string> outputs; ///< files the caller writes afterwards (check_outputs_against)
};

/// An evaluated checkpoint, with what its figures need.
struct CheckpointEval {
  LoadedCheckpoint loaded; ///< on request.device
  TrainOptions options;    ///< the checkpoint's, with the request's data set and batch size
  Dataset data;            ///< the test split
  EvalResult result;       ///< the evaluation's figures
  EvalReport report;       ///< what its report says besides them
};

/// Loads `request.checkpoint`, checks the outputs and the batch size (validate)
/// and, before evaluating, that a wanted confusion matrix is possible; then
/// evaluates on the test split (load_test_split; a folder's listing on `log`).
/// Throws std::invalid_argument, CheckpointError or DataError.
CheckpointEval evaluate_checkpoint(const CheckpointEvalRequest& request, std::ostream* log = nullptr);

} // namespace capsnet
