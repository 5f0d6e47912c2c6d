#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

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

} // namespace capsnet::cli
