#include "commands.h"

#include "capsnet/data/dataset.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/runtime.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

struct EvalFlags {
  std::string checkpoint;
  std::string data_dir;
  std::string dataset;
  int64_t batch_size = 500;
  int threads = 0;
  int64_t limit = 0;
  bool json = false;
  std::string routing = "fused";
  std::string precision = "fp32";
};

} // namespace

Runner add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on the test set");
  auto flags = std::make_shared<EvalFlags>();
  cmd->add_option("--checkpoint", flags->checkpoint, "checkpoint written by capsnet train")
      ->required();
  cmd->add_option("--data", flags->data_dir, "data directory (default: the dataset's default)");
  cmd->add_option("--dataset", flags->dataset,
                  "mnist or fashion-mnist (default: the one the checkpoint was trained on)")
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}));
  cmd->add_option("--batch-size", flags->batch_size, "evaluation batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--threads", flags->threads, "CPU threads (0: every core)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--limit", flags->limit, "evaluate on the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--routing", flags->routing, "routing implementation: fused or reference")
      ->check(CLI::IsMember({"fused", "reference"}))
      ->capture_default_str();
  cmd->add_option("--precision", flags->precision,
                  "fp32, or bf16 for the primary-capsule convolution (AMX/AVX512-BF16 CPUs)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("--json", flags->json, "print one JSON object instead of text");

  return [flags]() {
    configure_runtime(flags->threads);
    auto loaded = load_checkpoint(flags->checkpoint);
    auto options = loaded.options;
    options.eval_batch_size = flags->batch_size;
    loaded.model->set_routing_impl(routing_impl_from_string(flags->routing));
    const auto precision = usable_precision(precision_from_string(flags->precision), std::cerr);
    loaded.model->set_precision(precision);
    if (!flags->dataset.empty()) options.dataset = flags->dataset;
    const auto dir = !flags->data_dir.empty()      ? flags->data_dir
                     : !flags->dataset.empty()     ? default_data_dir(options.dataset)
                     : !options.data_dir.empty()   ? options.data_dir
                                                   : default_data_dir(options.dataset);
    const auto data = load_dataset(dir, Split::kTest, options.dataset, flags->limit);
    const auto result = evaluate(loaded.model, data, options);
    if (flags->json) {
      nlohmann::json per_class = nlohmann::json::array();
      for (size_t k = 0; k < result.class_total.size(); ++k) {
        per_class.push_back({{"class", k},
                             {"correct", result.class_correct[k]},
                             {"total", result.class_total[k]},
                             {"accuracy", result.class_total[k]
                                              ? double(result.class_correct[k]) / result.class_total[k]
                                              : 0.0}});
      }
      std::cout << nlohmann::json{{"checkpoint", flags->checkpoint},
                                  {"dataset", options.dataset},
                                  {"epoch", loaded.state.epoch},
                                  {"accuracy", result.accuracy()},
                                  {"errors", result.errors()},
                                  {"precision", to_string(precision)},
                                  {"total", result.total},
                                  {"loss", result.loss},
                                  {"seconds", result.seconds},
                                  {"per_class", per_class}}
                       .dump()
                << std::endl;
      return 0;
    }
    std::printf("checkpoint %s (epoch %ld, %s, preset %s)\n", flags->checkpoint.c_str(),
                static_cast<long>(loaded.state.epoch), options.dataset.c_str(),
                options.preset.c_str());
    std::printf("test accuracy %.2f%% (%ld errors of %ld), loss %.4f, %.1f s, %s\n",
                100 * result.accuracy(), static_cast<long>(result.errors()),
                static_cast<long>(result.total), result.loss, result.seconds,
                to_string(precision).c_str());
    std::printf("per-class accuracy:\n");
    for (size_t k = 0; k < result.class_total.size(); ++k) {
      std::printf("  %zu  %6.2f%%  (%ld/%ld)\n", k,
                  result.class_total[k] ? 100.0 * result.class_correct[k] / result.class_total[k]
                                        : 0.0,
                  static_cast<long>(result.class_correct[k]),
                  static_cast<long>(result.class_total[k]));
    }
    return 0;
  };
}

} // namespace capsnet::cli
