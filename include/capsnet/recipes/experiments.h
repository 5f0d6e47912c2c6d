#pragma once

// The paper's comparisons, one function each (`capsnet experiment`). Every
// training is a run directory under the budget's `out`: finished ones are
// read back, interrupted ones resumed, so an experiment run again goes on
// where it stopped. run_table1 and run_affine measure and write their
// markdown report; the *_report and table1_table functions render it.
//
// table1: the five rows of the paper's Table 1 (the baseline CNN; CapsNet
// with 1 or 3 routing iterations, with and without the reconstruction loss)
// trained on the same data and budget, `trials` times each with seeds
// 1..trials: mean +- std test error beside the paper's.
//
// affine: Section 5.2. CapsNet and the baseline CNN trained on expanded
// MNIST (digits at random positions in 40x40), each epoch evaluated on the
// expanded test set and on the affinely transformed one; the two compared at
// matched expanded-MNIST accuracy, as the paper did.

#include "capsnet/registry/options.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace capsnet {

/// What every training of an experiment shares.
struct ExperimentBudget {
  int64_t epochs = 10;      ///< epochs of every training
  int64_t batch_size = 128; ///< images per step
  int64_t limit = 0;      ///< train on the first N images (0: all)
  int64_t test_limit = 0; ///< test on the first N images (0: all)
  std::string data_dir;   ///< MNIST's directory; empty: the data set's default
  /// Recorded in each run's options; the caller sets the process's thread
  /// count (set_thread_count) before running an experiment.
  int threads = 0;
  Precision precision = Precision::kFp32; ///< the heavy layers' arithmetic in every training
  std::string out; ///< directory of the runs and the report (created)
  /// What Table 1 trains on (the affine experiment always takes MNIST's
  /// framed digits): a registered data set, "folder" with data_dir.
  std::string dataset = "mnist";
};

/// Throws std::invalid_argument naming the first out-of-range setting: the
/// trainings' options (validate(TrainOptions)), and epochs at most 100,000.
void validate(const ExperimentBudget& budget);

/// A training of `budget`: the paper's preset with the authors' learning-rate
/// decay (0.96 per 2,000 steps of 128 is 0.9905 per epoch) and `seed`.
TrainOptions experiment_options(const ExperimentBudget& budget, uint64_t seed);

/// The test error (%) a run's metrics.jsonl records for `epoch` (0: its last
/// row). Throws std::runtime_error when there is no such evaluated row.
double run_test_error(const std::string& run_dir, int64_t epoch = 0);

/// One row of the paper's Table 1.
struct Table1Row {
  std::string name;   ///< run directory name
  std::string label;  ///< as in the paper's Table 1
  double paper_error; ///< the paper's test error, %
  std::function<void(TrainOptions&)> apply; ///< the row's network and loss
};
/// The five rows, in the paper's order.
std::vector<Table1Row> table1_rows();

/// What run_table1 trains: the shared budget and the trials of each row.
struct Table1Options {
  ExperimentBudget budget; ///< what every trial shares
  int64_t trials = 3; ///< trainings per row, seeds 1..trials
};

/// One row of Table 1 as measured: each trial's test error beside the paper's.
struct Table1RowResult {
  std::string label;               ///< as in the paper's Table 1
  double paper_error = 0;          ///< %
  std::vector<double> test_errors; ///< % of each trial, at its last epoch
  /// The mean of test_errors, %.
  double mean() const;
  /// The sample standard deviation (0 for one trial).
  double std_dev() const;
};

/// What run_table1 measured, and where its report went.
struct Table1Result {
  /// Stopped by `stop`: the interrupted trial has its last.pt; running the
  /// same again goes on. `rows` then holds the rows finished so far.
  bool interrupted = false;
  std::vector<Table1RowResult> rows; ///< in the paper's order
  std::string machine;     ///< cpu_features().describe()
  std::string report_path; ///< OUT/table1.md, written unless interrupted
};

/// Trains (or reads back, or resumes) every trial of every row to
/// budget.epochs and writes OUT/table1.md. `log` (may be null) hears which
/// trial runs and the trainings' progress; `stop` (may be null) is polled
/// before every step. Throws std::invalid_argument when a trial's run
/// directory holds a run of another budget.
Table1Result run_table1(const Table1Options& options, std::ostream* log = nullptr,
                        const std::atomic<bool>* stop = nullptr);
/// The markdown table: one line per row, mean +- std beside the paper's.
std::string table1_table(const Table1Result& result);
/// table1.md: the budget, the machine and the table.
std::string table1_report(const Table1Options& options, const Table1Result& result);

/// What run_affine trains: the shared budget, the baseline's epochs, Efficient-CapsNet.
struct AffineOptions {
  ExperimentBudget budget; ///< epochs: CapsNet's, and the baseline's at least
  /// The baseline trains past budget.epochs until it matches CapsNet's
  /// expanded accuracy, up to this many epochs (0: twice budget.epochs).
  int64_t baseline_max_epochs = 0;
  /// The baseline's epoch limit: baseline_max_epochs (0: twice budget.epochs), at least
  /// budget.epochs.
  int64_t max_baseline_epochs() const;
  /// Efficient-CapsNet trains budget.epochs too, after the other two, and
  /// gets a row of its own (the paper did not test it on affine digits).
  bool efficient_capsnet = false;
};

/// One epoch of one model: accuracy (%) on the expanded test set (the run's
/// own evaluation) and on the affine one. A row of OUT/MODEL-affine.jsonl.
struct AffineEpoch {
  int64_t epoch = 0;            ///< counted from 1
  double expanded_accuracy = 0; ///< %, on the expanded MNIST test set
  double affine_accuracy = 0;   ///< %, on the affinely transformed test set
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AffineEpoch, epoch, expanded_accuracy, affine_accuracy)

/// One model of the affine experiment: its run, every epoch's accuracies and its size.
struct AffineModelResult {
  std::string name;       ///< run directory: OUT/NAME, OUT/NAME-affine.jsonl
  std::string label;      ///< in the report
  std::string model_name; ///< the model registry's
  /// The paper's accuracy on expanded MNIST, %.
  double paper_expanded = 0, paper_affine = 0; ///< the paper's on affNIST, %
  std::vector<AffineEpoch> epochs;             ///< every epoch evaluated
  int64_t parameters = 0;                      ///< the trained network's parameter count
};

/// What run_affine measured, and where its report went.
struct AffineResult {
  bool interrupted = false; ///< stopped by `stop`; run the same again to go on
  /// CapsNet's run.
  AffineModelResult capsnet, baseline; ///< the baseline CNN's run
  AffineModelResult efficient; ///< trained when AffineOptions::efficient_capsnet (else no epochs)
  std::string machine;     ///< cpu_features().describe()
  std::string report_path; ///< OUT/affine.md, written unless interrupted
  /// The baseline's epoch whose expanded accuracy is closest to CapsNet's
  /// last (the paper: 99.23% and 99.22%); the first of equals.
  const AffineEpoch& matched_baseline_epoch() const;
};

/// Trains CapsNet budget.epochs on expanded MNIST and the baseline CNN at
/// least as many, and on until it reaches CapsNet's expanded accuracy (at most
/// max_baseline_epochs()), evaluating every epoch on the affine test set too;
/// writes OUT/affine.md. Epochs already in OUT/MODEL-affine.jsonl are read
/// back. `log` and `stop` as for run_table1. Throws std::invalid_argument
/// when OUT holds runs of another budget.
AffineResult run_affine(const AffineOptions& options, std::ostream* log = nullptr,
                        const std::atomic<bool>* stop = nullptr);
/// affine.md: the budget, the matched comparison and every epoch.
std::string affine_report(const AffineOptions& options, const AffineResult& result);

} // namespace capsnet
