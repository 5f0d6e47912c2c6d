#include "commands.h"

#include "capsnet/data/batch.h"
#include "capsnet/data/dataset.h"
#include "capsnet/data/registry.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/inference.h"
#include "capsnet/viz/image.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/io/atomic_file.h"
#ifdef CAPSNET_WITH_FIGURES
#include "capsnet/viz/figure.h"
#endif

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
  int64_t limit = 0;
  bool json = false;
  RoutingImpl routing = RoutingImpl::kFused;
  ComputeFlags compute;
  std::string confusion_png;
  std::vector<std::string> worst; // N PNG
};

#ifdef CAPSNET_WITH_FIGURES
// The `count` wrong predictions with the longest predicted capsule (with two
// labels, MultiMNIST's: the pairs whose two longest capsules are not their
// two classes, by the shorter of those two capsules).
void write_worst(const std::string& path, int64_t count, const Batch& examples,
                 const EvalResult& result, const DataShape& shape) {
  const auto& labels = examples.labels;
  const bool pairs = labels.dim() == 2;
  const auto predictions = predicted_classes(result.scores, labels);
  const auto confidence = pairs ? std::get<0>(result.scores.topk(labels.size(1), 1)).select(1, -1)
                                : std::get<0>(result.scores.max(1));
  const auto wrong = pairs ? predictions.ne(std::get<0>(labels.sort(1))).any(1).nonzero().flatten()
                           : predictions.ne(labels).nonzero().flatten();
  const auto order = confidence.index_select(0, wrong).argsort(0, /*descending=*/true);
  const int64_t n = std::min<int64_t>(count, wrong.size(0));
  viz::GridFigure figure;
  figure.title = "The " + std::to_string(n) + " most confidently wrong test " +
                 (pairs ? "pairs" : "digits");
  figure.scale = 3;
  figure.sections.push_back({std::string("caption: true ") + (pairs ? "labels" : "label") +
                                 " as predicted, " +
                                 (pairs ? "shorter predicted capsule's length"
                                        : "predicted capsule length"),
                             {}});
  auto& rows = figure.sections.back().rows;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = wrong[order[k].item<int64_t>()].item<int64_t>();
    if (k % 8 == 0) rows.emplace_back();
    char caption[64];
    std::snprintf(caption, sizeof caption, "%s as %s, %.2f", classes_text(labels[i], shape).c_str(),
                  classes_text(predictions[i], shape).c_str(), confidence[i].item<double>());
    rows.back().cells.push_back({to_gray_image(examples.images[i]), caption, {}});
  }
  viz::write_grid_png(path, figure);
}
#endif

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

void print_json(const EvalFlags& f, const LoadedCheckpoint& loaded, const TrainOptions& options,
                const EvalResult& result, Precision precision) {
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t k = 0; k < result.class_total.size(); ++k) {
    per_class.push_back(
        {{"class", k},
         {"name", loaded.shape.class_name(int64_t(k))},
         {"correct", result.class_correct[k]},
         {"total", result.class_total[k]},
         {"accuracy",
          result.class_total[k] ? double(result.class_correct[k]) / result.class_total[k] : 0.0}});
  }
  std::cout << nlohmann::json{{"checkpoint", f.checkpoint},
                              {"dataset", options.dataset},
                              {"epoch", loaded.state.epoch},
                              {"accuracy", result.accuracy()},
                              {"errors", result.errors()},
                              {"precision", enum_name(precision)},
                              {"total", result.total},
                              {"loss", result.loss},
                              {"seconds", result.seconds},
                              {"per_class", per_class},
                              {"confusion", result.confusion}}
                   .dump()
            << std::endl;
}

void print_text(const EvalFlags& f, const LoadedCheckpoint& loaded, const TrainOptions& options,
                const EvalResult& result, Precision precision, int64_t worst_count) {
  std::printf("checkpoint %s (epoch %ld, %s, preset %s)\n", f.checkpoint.c_str(),
              static_cast<long>(loaded.state.epoch), options.dataset.c_str(),
              options.preset.c_str());
  std::printf("test accuracy %.2f%% (%ld errors of %ld), loss %.4f, %.1f s, %s\n",
              100 * result.accuracy(), static_cast<long>(result.errors()),
              static_cast<long>(result.total), result.loss, result.seconds,
              enum_name(precision).c_str());
  std::printf("per-class accuracy:\n");
  for (size_t k = 0; k < result.class_total.size(); ++k) {
    const auto named = loaded.shape.class_name(int64_t(k));
    const auto name = named == std::to_string(k) ? named : std::to_string(k) + " " + named;
    std::printf(
        "  %-16s  %6.2f%%  (%ld/%ld)\n", name.c_str(),
        result.class_total[k] ? 100.0 * result.class_correct[k] / result.class_total[k] : 0.0,
        static_cast<long>(result.class_correct[k]), static_cast<long>(result.class_total[k]));
  }
  std::printf("confusion matrix (rows: true class, columns: predicted):\n     ");
  for (size_t j = 0; j < result.confusion.size(); ++j) std::printf(" %5zu", j);
  std::printf("\n");
  for (size_t i = 0; i < result.confusion.size(); ++i) {
    std::printf("  %2zu ", i);
    for (auto count : result.confusion[i]) std::printf(" %5ld", static_cast<long>(count));
    std::printf("\n");
  }
  if (!f.confusion_png.empty()) std::printf("confusion matrix drawn to %s\n", f.confusion_png.c_str());
  if (worst_count > 0) std::printf("worst errors drawn to %s\n", f.worst[1].c_str());
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
  const auto data = load_test_split(options, f.data_dir, f.dataset, f.limit, loaded.shape);
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
    write_worst(f.worst[1], worst_count, test_examples(options, data, 0, loaded.shape), result,
                loaded.shape);
  }
#endif
  if (f.json) {
    print_json(f, loaded, options, result, precision);
  } else {
    print_text(f, loaded, options, result, precision, worst_count);
  }
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
