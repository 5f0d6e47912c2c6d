#include "commands.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/runtime/runtime.h"
#ifdef CAPSNET_WITH_FIGURES
#include "capsnet/viz/figure.h"
#include "capsnet/viz/figures.h"
#endif

#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

struct EvalFlags {
  std::string checkpoint;
  std::string data_dir;
  std::string dataset;
  int64_t batch_size = 500;
  int64_t limit = 0;
  bool json = false;
  RoutingImpl routing = RoutingImpl::kFused;
  ComputeFlags compute;
  std::string confusion_png;
  std::vector<std::string> worst; // N PNG
};

// --worst's count, checked: a whole number from 1 to 1024 (0: no --worst).
int64_t worst_count_of(const EvalFlags& f) {
  int64_t worst_count = 0;
  if (!f.worst.empty()) {
    size_t used = 0;
    try {
      worst_count = std::stoll(f.worst[0], &used);
    } catch (const std::exception&) {
      worst_count = -1;
    }
    // The whole word a count ("1e9" is not 1), and no more images than a figure can hold.
    if (worst_count <= 0 || used != f.worst[0].size() || worst_count > 1024) {
      throw std::invalid_argument("--worst takes a count from 1 to 1024 and a PNG path, got '" +
                                  f.worst[0] + " " + f.worst[1] + "'");
    }
  }
  return worst_count;
}

int run_eval(const EvalFlags& f) {
#ifndef CAPSNET_WITH_FIGURES
  if (!f.confusion_png.empty() || !f.worst.empty()) {
    throw std::invalid_argument(std::string(f.worst.empty() ? "--confusion" : "--worst") +
                                " draws a PNG, and this capsnet was built without figures "
                                "(-DCAPSNET_WITH_FIGURES=OFF); leave it out, or rebuild with "
                                "cairo (README, \"A build with only LibTorch\")");
  }
#endif
  const int64_t worst_count = worst_count_of(f);
  const auto [device, precision] = f.compute.resolve(); // threads before any work
  auto loaded = load_checkpoint(f.checkpoint);
  auto options = loaded.options;
  auto inputs = files_in(test_data_dir(options, f.data_dir, f.dataset));
  inputs.push_back(f.checkpoint);
  check_outputs({f.confusion_png, f.worst.empty() ? "" : f.worst[1]}, inputs);
  options.eval_batch_size = f.batch_size;
  validate(options); // the library's bound of the batch size
  loaded.module().to(device);
  loaded.task()->set_execution(f.routing, precision); // on the shared network
  const auto data = load_test_split(options, f.data_dir, f.dataset, f.limit, loaded.shape, &std::cerr);
  const auto& info = dataset_info(options.dataset);
  if (!f.confusion_png.empty() && info.labels_per_image != 1) {
    throw std::invalid_argument("--confusion: a confusion matrix needs one label per image, and " +
                                info.name + "'s images have " +
                                std::to_string(info.labels_per_image) +
                                "; leave --confusion out");
  }
  const auto result = evaluate(loaded, data, options);
#ifdef CAPSNET_WITH_FIGURES
  if (!f.confusion_png.empty()) {
    viz::write_confusion_png(f.confusion_png,
                             "Confusion matrix: " + f.checkpoint + " on " +
                                 options.dataset + " test (" + std::to_string(result.total) +
                                 " images)",
                             result.confusion);
  }
  if (worst_count > 0) {
    const auto examples = test_examples(options, data, 0, loaded.shape);
    viz::write_grid_png(f.worst[1],
                        viz::worst_errors_figure(examples, result.scores, loaded.shape, worst_count));
  }
#endif
  const EvalReport report{f.checkpoint, options.dataset, options.preset, loaded.state.epoch,
                          precision, loaded.shape};
  if (f.json) {
    std::cout << eval_json(result, report).dump() << std::endl;
    return 0;
  }
  std::cout << eval_text(result, report);
  if (!f.confusion_png.empty()) std::cout << "confusion matrix drawn to " << f.confusion_png << "\n";
  if (worst_count > 0) std::cout << "worst errors drawn to " << f.worst[1] << "\n";
  std::cout << std::flush;
  return 0;
}

} // namespace

Runner add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Evaluate a checkpoint on the test set");
  auto flags = std::make_shared<EvalFlags>();
  add_checkpoint_option(cmd, flags->checkpoint);
  add_data_option(cmd, flags->data_dir, "data directory (default: the run's)");
  add_dataset_option(cmd, flags->dataset, "data set (default: the one the checkpoint was trained on)");
  cmd->add_option("--batch-size", flags->batch_size, "evaluation batch size")
      ->capture_default_str();
  cmd->add_option("--limit", flags->limit, "evaluate on the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  add_routing_option(cmd, flags->routing);
  flags->compute.add_to(cmd);
  cmd->add_option("--confusion", flags->confusion_png,
                  "also draw the confusion matrix into this PNG file");
  cmd->add_option("--worst", flags->worst,
                  "N PNG: draw the N most confidently wrong test digits into PNG")
      ->expected(2)
      ->type_name("N PNG");
  cmd->add_flag("--json", flags->json, "print one JSON object instead of text");

  return [flags]() { return run_eval(*flags); };
}

} // namespace capsnet::cli
