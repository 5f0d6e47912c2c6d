#pragma once

// One row of a run's metrics.jsonl: the schema in one place, for the trainer
// that writes it and for every reader (resume, experiments, plots).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <vector>

namespace capsnet {

/// One finished epoch as metrics.jsonl records it.
struct EpochRecord {
  int64_t epoch = 0; ///< 1-based
  double train_loss = 0; ///< mean training loss over the epoch's images
  double train_accuracy = 0; ///< in [0, 1]
  double lr = 0;             ///< at the next step
  double seconds = 0;           ///< seconds spent in the epoch's training steps
  double images_per_second = 0; ///< training images per second
  /// Whether the epoch's test evaluation ran; without it the test keys are
  /// left out of the row.
  bool evaluated = false;
  double test_loss = 0;     ///< mean loss on the test set
  double test_accuracy = 0; ///< in [0, 1]
  int64_t test_errors = 0;  ///< test images predicted wrongly
  int64_t test_size = 0;    ///< test images evaluated
  double eval_seconds = 0;  ///< seconds the test evaluation took
  /// Other figures of the epoch under their own keys (the all-reduce's).
  std::map<std::string, double> extra;

  /// Test error in percent (NaN without an evaluation of at least one image).
  double test_error_percent() const { return 100.0 * test_errors / static_cast<double>(test_size); }
};

void to_json(nlohmann::json& j, const EpochRecord& r);
/// Throws nlohmann::json::exception for a row without "epoch" or with a
/// field of the wrong type; other absent fields take their defaults (rows
/// written by hand or by older versions).
void from_json(const nlohmann::json& j, EpochRecord& r);

/// The rows of a metrics.jsonl stream; `source` names it in errors. A line
/// that is not a row throws std::invalid_argument naming source and line,
/// unless `skip_bad` (a torn last line after a crash), when it is left out.
std::vector<EpochRecord> read_epoch_records(std::istream& in, const std::string& source,
                                            bool skip_bad = false);
/// The same, for readers that need the test evaluation (plots): a row
/// without one is not a row either, and the error names source and line.
std::vector<EpochRecord> read_evaluated_epoch_records(std::istream& in, const std::string& source);
/// The same for a file; a missing file has no rows.
std::vector<EpochRecord> read_epoch_records(const std::string& path, bool skip_bad = false);

} // namespace capsnet
