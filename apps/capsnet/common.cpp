// What several subcommands share.
#include "commands.h"

#include "capsnet/data/dataset.h"
#include "capsnet/engine/options.h"
#include "capsnet/engine/runtime.h"

#include <iostream>

namespace capsnet::cli {

Dataset load_test_split(TrainOptions& options, const std::string& data_dir,
                        const std::string& dataset, int64_t limit) {
  if (!dataset.empty()) options.dataset = dataset;
  const auto dir = !data_dir.empty()           ? data_dir
                   : !dataset.empty()          ? default_data_dir(options.dataset)
                   : !options.data_dir.empty() ? options.data_dir
                                               : default_data_dir(options.dataset);
  return load_dataset(dir, Split::kTest, options.dataset, limit);
}

void ComputeFlags::add_to(CLI::App* cmd) {
  cmd->add_option("--precision", precision,
                  "fp32, or bf16 for the primary-capsule convolution (AMX/AVX512-BF16 CPUs, "
                  "GPUs)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--device", device, "auto (a CUDA GPU when there is one), cpu or cuda[:N]")
      ->capture_default_str();
}

std::pair<c10::Device, Precision> ComputeFlags::resolve() const {
  const auto where = resolve_device(device);
  return {where, usable_precision(precision_from_string(precision), std::cerr, where)};
}

std::pair<c10::Device, Precision> ComputeFlags::apply(CapsNet& model) const {
  const auto chosen = resolve();
  model->to(chosen.first);
  model->set_precision(chosen.second);
  return chosen;
}

} // namespace capsnet::cli
