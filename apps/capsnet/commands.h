#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace capsnet::cli {

/// Each subcommand adds itself to the app and returns the function that runs
/// it after parsing; that function returns the process exit code.
using Runner = std::function<int()>;

Runner add_train_command(CLI::App& app);
Runner add_eval_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);

} // namespace capsnet::cli
