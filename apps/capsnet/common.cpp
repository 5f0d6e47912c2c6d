// What several subcommands share.
#include "commands.h"

#include "capsnet/data/registry.h"
#include "capsnet/inference/shipped_model.h"
#include "capsnet/runtime/runtime.h"

#include <iostream>

namespace capsnet::cli {

namespace {
std::string& name_storage() {
  static std::string name = "capsnet";
  return name;
}
} // namespace

const std::string& program_name() { return name_storage(); }
void set_program_name(const std::string& name) { name_storage() = name; }

Runner add_missing_command(CLI::App& app, const std::string& name, const std::string& how) {
  auto* cmd = app.add_subcommand(name, "(not in this build: configured with " + how + ")");
  cmd->allow_extras();
  return [name, how]() -> int {
    throw std::invalid_argument("capsnet " + name + " is not in this build (configured with " +
                                how + "); build capsnet with the full dependencies "
                                "(scripts/install-deps.sh; README, \"Quick start\")");
  };
}


CLI::Validator finite_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& input) {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value) || !(value >= lo && value <= hi)) {
          return "'" + input + "' is not a number in [" + CLI::detail::to_string(lo) + ", " +
                 CLI::detail::to_string(hi) + "]";
        }
        return std::string();
      },
      "FLOAT in [" + CLI::detail::to_string(lo) + " - " + CLI::detail::to_string(hi) + "]");
}

CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("--threads", threads, "CPU threads (0: every core, at most 1024)")
      ->check(CLI::Range(0, kMaxThreads))
      ->capture_default_str();
}

CLI::Option* add_routing_option(CLI::App* cmd, RoutingImpl& routing) {
  return add_enum_option(cmd, "--routing", routing,
                         "routing implementation: 'fused' kernel or the plain ATen 'reference' "
                         "(the same function)");
}

CLI::Option* add_precision_option(CLI::App* cmd, Precision& precision) {
  return add_enum_option(cmd, "--precision", precision,
                         "fp32, or bf16: the convolutions (CapsNet's conv1 and primary capsules, "
                         "Efficient-CapsNet's stem) in bfloat16 on CPUs with AMX or AVX512-BF16 "
                         "and on GPUs (fp32 master weights and optimizer; fp32 with a message "
                         "elsewhere)");
}

CLI::Option* add_device_option(CLI::App* cmd, std::string& device) {
  return cmd->add_option("--device", device,
                         "auto (a CUDA GPU when LibTorch sees one, else the CPU), cpu or cuda[:N]")
      ->capture_default_str();
}

CLI::Option* add_dataset_option(CLI::App* cmd, std::string& dataset, const std::string& help) {
  return cmd->add_option("--dataset", dataset, help)->check(CLI::IsMember(dataset_names()));
}

CLI::Option* add_data_option(CLI::App* cmd, std::string& dir, const std::string& help) {
  return cmd->add_option("--data", dir, help);
}

CLI::Option* add_checkpoint_option(CLI::App* cmd, std::string& path, bool shipped) {
  if (!shipped) {
    return cmd->add_option("--checkpoint", path, "checkpoint written by capsnet train")->required();
  }
  cmd->parse_complete_callback([&path] { path = checkpoint_or_shipped(path, &std::cerr); });
  return cmd->add_option("--checkpoint", path, "checkpoint written by capsnet train (default: the "
                         "shipped Efficient-CapsNet for MNIST, models/README.md)");
}

void ComputeFlags::add_to(CLI::App* cmd) {
  add_precision_option(cmd, precision);
  add_device_option(cmd, device);
  add_threads_option(cmd, threads);
}

std::pair<c10::Device, Precision> ComputeFlags::resolve() const {
  set_thread_count(threads);
  const auto where = resolve_device(device);
  return {where, usable_precision(precision, std::cerr, where)};
}

} // namespace capsnet::cli
