#pragma once

#include "capsnet/model/capsnet.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>

namespace capsnet {
struct Dataset;
struct TrainOptions;
} // namespace capsnet

namespace capsnet::cli {

/// Each subcommand adds itself to the app and returns the function that runs
/// it after parsing; that function returns the process exit code.
using Runner = std::function<int()>;

Runner add_train_command(CLI::App& app);
Runner add_eval_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_predict_command(CLI::App& app);
Runner add_reconstruct_command(CLI::App& app);
Runner add_perturb_command(CLI::App& app);
Runner add_plot_command(CLI::App& app);
Runner add_export_command(CLI::App& app);

/// The test split a checkpoint is evaluated on: --data when given, else the
/// default directory of --dataset when given, else the run's own data.
/// `options.dataset` becomes `dataset` when that is not empty.
Dataset load_test_split(TrainOptions& options, const std::string& data_dir,
                        const std::string& dataset, int64_t limit);

/// --precision and --device, for the commands that run a trained model.
struct ComputeFlags {
  std::string precision = "fp32";
  std::string device = "auto";

  void add_to(CLI::App* cmd);
  /// The device, and the precision usable there (bf16 falls back to fp32 with
  /// a message on stderr on a CPU without bf16 hardware).
  std::pair<c10::Device, Precision> resolve() const;
  /// resolve(), then moves `model` to the device and sets its precision.
  std::pair<c10::Device, Precision> apply(CapsNet& model) const;
};

} // namespace capsnet::cli
