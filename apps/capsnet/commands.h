#pragma once

#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/test_split.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/io/enum_names.h"
#include "capsnet/model/capsnet.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

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
Runner add_attention_command(CLI::App& app);
Runner add_plot_command(CLI::App& app);
Runner add_export_command(CLI::App& app);
Runner add_launch_command(CLI::App& app);
Runner add_experiment_command(CLI::App& app);
Runner add_serve_command(CLI::App& app);
Runner add_data_command(CLI::App& app);
/// A subcommand that this build left out (`how`: the CMake option that did):
/// it takes any arguments and fails, saying so.
Runner add_missing_command(CLI::App& app, const std::string& name, const std::string& how);

/// How messages name this process: "capsnet", or "capsnet[rank N]" in a
/// data-parallel job.
const std::string& program_name();
void set_program_name(const std::string& name);

// The options several subcommands share, each defined once here.

/// An option taking one of the enum's names (enum_names.h), bound to `value`
/// through CLI11's CheckedTransformer; help and errors list the names.
template <typename E>
CLI::Option* add_enum_option(CLI::App* cmd, const std::string& name, E& value,
                             const std::string& help) {
  const CLI::Validator checked = CLI::CheckedTransformer(enum_map<E>());
  std::string names;
  for (const auto& entry : enum_map<E>()) names += (names.empty() ? "" : ",") + entry.first;
  const CLI::Validator named(
      [checked](std::string& input) {
        const std::string given = input;
        return checked(input).empty() ? std::string()
                                      : "'" + given + "' is not a known " +
                                            EnumNames<E>::what() + "; expected " +
                                            enum_choices<E>();
      },
      "{" + names + "}");
  return cmd->add_option(name, value, help)->transform(named)->type_name("TEXT")->default_str(
      enum_name(value));
}
/// A number in [lo, hi]; unlike CLI::Range, NaN is refused.
CLI::Validator finite_range(double lo, double hi);
/// --threads: CPU threads, 0 for every core.
CLI::Option* add_threads_option(CLI::App* cmd, int& threads);
/// --routing: the routing implementation.
CLI::Option* add_routing_option(CLI::App* cmd, RoutingImpl& routing);
/// --precision.
CLI::Option* add_precision_option(CLI::App* cmd, Precision& precision);
/// --device: auto, cpu or cuda[:N].
CLI::Option* add_device_option(CLI::App* cmd, std::string& device);
/// --dataset: one of the registered data sets.
CLI::Option* add_dataset_option(CLI::App* cmd, std::string& dataset, const std::string& help);
/// --data: a directory of data files.
CLI::Option* add_data_option(CLI::App* cmd, std::string& dir, const std::string& help);
/// --checkpoint: a file written by capsnet train; required where `shipped` is
/// false, else the shipped model when not given (checkpoint_or_shipped).
CLI::Option* add_checkpoint_option(CLI::App* cmd, std::string& path, bool shipped = true);

/// --threads, --precision and --device, for the commands that run a trained model.
struct ComputeFlags {
  Precision precision = Precision::kFp32;
  std::string device = "auto";
  int threads = 0;

  void add_to(CLI::App* cmd);
  /// Sets the thread count; the device, and the precision usable there (bf16
  /// falls back to fp32 with a message on stderr on a CPU without bf16 hardware).
  std::pair<c10::Device, Precision> resolve() const;
};

} // namespace capsnet::cli
