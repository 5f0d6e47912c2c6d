#include "commands.h"

#include "capsnet/engine/test_split.h"
#ifdef CAPSNET_WITH_FIGURES
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
                                "cairo (docs/gpu.md, \"A build with only LibTorch\")");
  }
#endif
  const int64_t worst_count = worst_count_of(f);
  const auto [device, precision] = f.compute.resolve(); // threads before any work
  const CheckpointEvalRequest request{f.checkpoint, f.data_dir, f.dataset, f.batch_size,
                                      f.limit, f.routing, device, precision,
                                      !f.confusion_png.empty(), // refused early where impossible
                                      {f.confusion_png, f.worst.empty() ? "" : f.worst[1]}};
  const auto eval = evaluate_checkpoint(request, &std::cerr);
#ifdef CAPSNET_WITH_FIGURES
  viz::draw_eval_figures(eval, f.checkpoint, f.confusion_png, f.worst.empty() ? "" : f.worst[1],
                         worst_count);
#endif
  if (f.json) {
    std::cout << eval_json(eval.result, eval.report).dump() << std::endl;
    return 0;
  }
  std::cout << eval_text(eval.result, eval.report);
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
