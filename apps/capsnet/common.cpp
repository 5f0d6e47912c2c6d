// What several subcommands share.
#include "commands.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/options.h"
#include "capsnet/engine/runtime.h"

#include <iostream>

namespace capsnet::cli {

CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("--threads", threads, "CPU threads (0: every core)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

CLI::Option* add_routing_option(CLI::App* cmd, RoutingImpl& routing) {
  return add_enum_option(cmd, "--routing", routing,
                         "routing implementation: 'fused' kernel or the plain ATen 'reference' "
                         "(the same function)");
}

CLI::Option* add_precision_option(CLI::App* cmd, Precision& precision) {
  return add_enum_option(cmd, "--precision", precision,
                         "fp32, or bf16: the primary-capsule convolution in bfloat16 on CPUs "
                         "with AMX or AVX512-BF16 and on GPUs (fp32 master weights and "
                         "optimizer; fp32 with a message elsewhere)");
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

CLI::Option* add_checkpoint_option(CLI::App* cmd, std::string& path) {
  return cmd->add_option("--checkpoint", path, "checkpoint written by capsnet train")->required();
}

Dataset load_test_split(TrainOptions& options, const std::string& data_dir,
                        const std::string& dataset, int64_t limit) {
  if (!dataset.empty()) options.dataset = dataset;
  // A new --dataset without --data: that data set's own directory.
  const auto dir = !data_dir.empty() ? data_dir : !dataset.empty() ? "" : options.data_dir;
  return load_dataset(dir, Split::kTest, options.dataset, limit);
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
