// The paper's figures from a trained model (reconstructions, Fig. 3;
// capsule-dimension perturbations, Fig. 4), Efficient-CapsNet's attention
// coefficients, and training curves of a run.
#include "commands.h"

#include "capsnet/data/batch.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/inference.h"
#include "capsnet/viz/image.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/viz/figure.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

namespace capsnet::cli {

namespace {

struct CheckpointFlags {
  std::string checkpoint, out, data_dir, dataset;
  int threads = 0;
  int scale = 2;
};

void add_checkpoint_flags(CLI::App* cmd, CheckpointFlags& f, const std::string& out_default) {
  add_checkpoint_option(cmd, f.checkpoint);
  f.out = out_default;
  cmd->add_option("--out", f.out, "PNG file to write")->capture_default_str();
  add_data_option(cmd, f.data_dir, "data directory (default: the run's)");
  add_dataset_option(cmd, f.dataset, "data set (default: the run's)");
  cmd->add_option("--scale", f.scale, "screen pixels per image pixel")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  add_threads_option(cmd, f.threads);
}

// What reconstruct and perturb read: the checkpoint and the data directory.
std::vector<std::string> checkpoint_and_data(const CheckpointFlags& f, const TrainOptions& options) {
  auto inputs = files_in(test_data_dir(options, f.data_dir, f.dataset));
  inputs.push_back(f.checkpoint);
  return inputs;
}

viz::Cell cell(const at::Tensor& image, const std::string& caption = "") {
  return {to_gray_image(image), caption, {}};
}

// Reconstructions from the capsules `classes` selects: [B, C, H, W] for
// classes [B]; [B, P, C, H, W] for classes [B, P], one per class.
at::Tensor reconstructions(const Predictor& predictor, const at::Tensor& capsules,
                           const at::Tensor& classes) {
  if (classes.dim() == 1) return predictor.reconstruct(capsules, classes);
  std::vector<at::Tensor> each;
  for (int64_t p = 0; p < classes.size(1); ++p) {
    each.push_back(predictor.reconstruct(capsules, classes.select(1, p).contiguous()));
  }
  return at::stack(each, 1);
}

// One reconstruction in gray, or several (Figure 5) in red, green, blue.
viz::Cell recon_cell(const at::Tensor& recon, const std::string& caption) {
  if (recon.dim() == 3) return cell(recon, caption);
  static const viz::Tint tints[] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  viz::Cell c{to_gray_image(recon[0]), caption, {}};
  for (int64_t p = 0; p < recon.size(0); ++p) {
    c.layers.push_back({to_gray_image(recon[p]), tints[p % 3]});
  }
  return c;
}

// What Figure 3 shows of the test images it classified: the images, their
// labels, the network's output and the classes it reconstructs from.
struct Classified {
  at::Tensor images, labels;
  Classification out;
  at::Tensor predicted;
  bool pairs = false;
};

// The first part: the first `shown` test images above their reconstructions.
viz::GridSection reconstruction_section(const Predictor& predictor, const Classified& c,
                                        int64_t shown) {
  const auto& images = c.images;
  const auto& labels = c.labels;
  const auto& out = c.out;
  const auto& predicted = c.predicted;
  const bool pairs = c.pairs;
  const int per_row = 16;
  viz::GridSection section{
      pairs ? "Test images (top, L: the two labels) and the reconstructions from the capsules "
              "of the two predicted classes (bottom, R: those classes), the smaller class in "
              "red, the larger in green (Figure 5)"
            : "Test digits (top) and their reconstructions from the predicted capsule "
              "(bottom, captioned with the prediction)",
      {}};
  const auto chosen = predicted.narrow(0, 0, shown);
  const auto recon = reconstructions(predictor, out.capsules.narrow(0, 0, shown), chosen);
  for (int64_t start = 0; start < shown; start += per_row) {
    viz::GridRow inputs{"input", {}}, outputs{"reconstruction", {}};
    for (int64_t i = start; i < std::min(shown, start + per_row); ++i) {
      inputs.cells.push_back(
          cell(images[i], (pairs ? "L:" : "label ") + classes_text(labels[i], predictor.shape())));
      outputs.cells.push_back(recon_cell(
          recon[i], (pairs ? "R:" : "pred ") + classes_text(chosen[i], predictor.shape())));
    }
    section.rows.push_back(inputs);
    section.rows.push_back(outputs);
  }
  return section;
}

// The second part: up to `errors` misclassified images, reconstructed from
// the predicted and from the true capsules; `wrong_count` gets their number.
viz::GridSection errors_section(const Predictor& predictor, const Classified& c, int64_t errors,
                                int64_t scanned, int64_t& wrong_count) {
  const auto& images = c.images;
  const auto& labels = c.labels;
  const auto& out = c.out;
  const auto& predicted = c.predicted;
  const bool pairs = c.pairs;
  const auto wrong = pairs ? predicted.ne(std::get<0>(labels.sort(1))).any(1).nonzero().flatten()
                           : out.predictions.ne(labels).nonzero().flatten();
  wrong_count = wrong.size(0);
  const int64_t k = std::min(errors, wrong_count);
  viz::GridSection section{
      std::string(pairs ? "Misclassified pairs" : "Misclassified digits") +
          ": input, reconstruction from the predicted " +
          (pairs ? "capsules" : "capsule") + ", from the true " +
          (pairs ? "capsules" : "capsule") + " (" + std::to_string(wrong_count) +
          " errors among " + std::to_string(scanned) + " test images)",
      {}};
  if (k > 0) {
    const auto idx = wrong.narrow(0, 0, k);
    const auto caps = out.capsules.index_select(0, idx);
    const auto from_pred = reconstructions(predictor, caps, predicted.index_select(0, idx));
    const auto truth_classes = pairs ? std::get<0>(labels.sort(1)) : labels;
    const auto from_true =
        reconstructions(predictor, caps, truth_classes.index_select(0, idx));
    viz::GridRow row{"", {}};
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = idx[j].item<int64_t>();
      const auto truth = classes_text(truth_classes[i], predictor.shape());
      const auto pred = classes_text(predicted[i], predictor.shape());
      row.cells.push_back(cell(images[i], "#" + std::to_string(i) + " (" + truth + ")"));
      row.cells.push_back(recon_cell(from_pred[j], "as " + pred));
      row.cells.push_back(recon_cell(from_true[j], "as " + truth));
      if (row.cells.size() >= 12 || j + 1 == k) {
        section.rows.push_back(row);
        row.cells.clear();
      }
    }
  }
  return section;
}

} // namespace

Runner add_reconstruct_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "reconstruct", "Figure 3: test digits above their reconstructions, and misclassified "
                     "digits reconstructed from the predicted and from the true capsule");
  auto f = std::make_shared<CheckpointFlags>();
  auto n = std::make_shared<int64_t>(32);
  auto errors = std::make_shared<int64_t>(8);
  auto search = std::make_shared<int64_t>(0);
  add_checkpoint_flags(cmd, *f, "recon.png");
  cmd->add_option("--n", *n, "test digits in the first part (the first N of the test set)")
      ->check(CLI::Range(int64_t(1), int64_t(1024)))
      ->capture_default_str();
  cmd->add_option("--errors", *errors, "misclassified digits in the second part (0: none)")
      ->check(CLI::Range(int64_t(0), int64_t(256)))
      ->capture_default_str();
  cmd->add_option("--search", *search,
                  "look for misclassified digits among the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);

  return [f, n, errors, search]() {
    set_thread_count(f->threads);
    auto predictor = Predictor::load(f->checkpoint, "capsnet reconstruct", {Capability::kDecoder});
    auto options = predictor.options();
    check_outputs({f->out}, checkpoint_and_data(*f, options));
    const int64_t wanted = *errors > 0 ? *search : *n;
    // All of the base split, so that a generated example is the one the full test set has.
    const auto data = load_test_split(options, f->data_dir, f->dataset, 0, predictor.shape());
    const auto examples = test_examples(options, data, wanted, predictor.shape());
    const int64_t shown = std::min(*n, examples.size());
    const auto scanned = *errors > 0 ? examples.size() : shown;
    const auto images = examples.images.narrow(0, 0, scanned);
    const auto labels = examples.labels.narrow(0, 0, scanned);
    const auto out = predictor.classify(images);
    const bool pairs = labels.dim() == 2;
    // What the figure reconstructs from: the predicted capsule, or (MultiMNIST)
    // the capsules of the two predicted classes.
    const auto predicted = pairs ? predicted_classes(out.lengths, labels) : out.predictions;

    viz::GridFigure figure;
    figure.scale = f->scale;
    figure.title = "Reconstructions: " + f->checkpoint;
    const Classified classified{images, labels, out, predicted, pairs};
    figure.sections.push_back(reconstruction_section(predictor, classified, shown));
    int64_t wrong_count = 0;
    if (*errors > 0) {
      figure.sections.push_back(errors_section(predictor, classified, *errors, scanned, wrong_count));
    }
    viz::write_grid_png(f->out, figure);
    std::printf("wrote %s: %ld test %s with reconstructions", f->out.c_str(),
                static_cast<long>(shown), pairs ? "pairs" : "digits");
    if (*errors > 0) {
      std::printf("; %ld of %ld misclassified among %ld test images", 
                  static_cast<long>(std::min(*errors, wrong_count)), static_cast<long>(wrong_count),
                  static_cast<long>(scanned));
    }
    std::printf("\n");
    return 0;
  };
}

Runner add_attention_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "attention", "The routing's coupling coefficients of test images: for Efficient-CapsNet, "
                   "the self-attention c_ij of each primary capsule i (row) for each class j "
                   "(column)");
  auto f = std::make_shared<CheckpointFlags>();
  auto n = std::make_shared<int64_t>(8);
  add_checkpoint_flags(cmd, *f, "attention.png");
  cmd->add_option("--n", *n, "test images shown (the first N of the test set)")
      ->check(CLI::Range(int64_t(1), int64_t(256)))
      ->capture_default_str();

  return [f, n]() {
    set_thread_count(f->threads);
    auto predictor = Predictor::load(f->checkpoint, "capsnet attention");
    auto options = predictor.options();
    check_outputs({f->out}, checkpoint_and_data(*f, options));
    const auto data = load_test_split(options, f->data_dir, f->dataset, 0, predictor.shape());
    const auto examples = test_examples(options, data, *n, predictor.shape());
    const int64_t shown = std::min(*n, examples.size());
    const auto images = examples.images.narrow(0, 0, shown);
    const auto coupling = predictor.coupling(images);
    if (!coupling.defined()) {
      throw std::invalid_argument(
          "capsnet attention: model '" + options.model_name +
          "' has no attention coefficients to show (its routing's coefficients depend on the "
          "iteration); use a checkpoint of efficient-capsnet");
    }
    const auto out = predictor.classify(images);
    viz::GridFigure figure;
    figure.scale = f->scale;
    figure.title = "Self-attention routing: " + f->checkpoint;
    const int64_t n_in = coupling.size(1), K = coupling.size(2), block = 3;
    viz::GridSection section{"c_ij: rows are the " + std::to_string(n_in) +
                                 " primary capsules i, columns the classes j; white is 1",
                             {}};
    for (int64_t b = 0; b < shown; ++b) {
      GrayImage map(static_cast<int>(K * block), static_cast<int>(n_in * block));
      const auto c = coupling[b].contiguous();
      for (int64_t i = 0; i < n_in; ++i) {
        for (int64_t j = 0; j < K; ++j) {
          const float value = c[i][j].item<float>();
          for (int64_t y = 0; y < block; ++y) {
            for (int64_t x = 0; x < block; ++x) {
              map.at(static_cast<int>(j * block + x), static_cast<int>(i * block + y)) = value;
            }
          }
        }
      }
      const auto label = classes_text(examples.labels[b], predictor.shape());
      const auto predicted = out.predictions[b].item<int64_t>();
      viz::GridRow row{label + " as " + predictor.class_name(predicted), {}};
      row.cells.push_back(cell(images[b]));
      row.cells.push_back({map, "", {}});
      section.rows.push_back(row);
    }
    figure.sections.push_back(section);
    viz::write_grid_png(f->out, figure);
    std::printf("wrote %s: coupling coefficients of %ld test images (%ld primary capsules x %ld "
                "classes); mean coupling to the predicted class %.3f\n",
                f->out.c_str(), static_cast<long>(shown), static_cast<long>(n_in),
                static_cast<long>(K),
                coupling.gather(2, out.predictions.view({-1, 1, 1}).expand({shown, n_in, 1}))
                    .mean()
                    .item<double>());
    return 0;
  };
}

Runner add_perturb_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "perturb", "Figure 4: reconstructions as each dimension of the active digit capsule of "
                 "one test image moves over [-range, range]");
  auto f = std::make_shared<CheckpointFlags>();
  auto index = std::make_shared<int64_t>(0);
  auto range = std::make_shared<double>(0.25);
  auto step = std::make_shared<double>(0.05);
  auto klass = std::make_shared<int64_t>(-1);
  add_checkpoint_flags(cmd, *f, "perturb.png");
  cmd->add_option("--index", *index, "test image index")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--class", *klass, "capsule to perturb (default: the predicted class)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--range", *range, "largest change of a dimension")
      ->check(finite_range(1e-3, 10.0))
      ->capture_default_str();
  cmd->add_option("--step", *step, "change between columns")
      ->check(finite_range(1e-3, 10.0))
      ->capture_default_str();

  return [f, index, range, step, klass]() {
    set_thread_count(f->threads);
    auto predictor = Predictor::load(f->checkpoint, "capsnet perturb", {Capability::kDecoder});
    auto options = predictor.options();
    check_outputs({f->out}, checkpoint_and_data(*f, options));
    const auto data = load_test_split(options, f->data_dir, f->dataset, 0, predictor.shape());
    const auto examples = test_examples(options, data, *index + 1, predictor.shape());
    if (*index >= examples.size()) {
      throw std::invalid_argument("--index " + std::to_string(*index) + " is past the end of the " +
                                  std::to_string(examples.size()) + " test images");
    }
    const auto image = examples.images.narrow(0, *index, 1);
    const auto label = classes_text(examples.labels[*index], predictor.shape());
    const auto out = predictor.classify(image);
    const int64_t predicted = out.predictions[0].item<int64_t>();
    const auto config = predictor.sizes();
    const int64_t active = *klass >= 0 ? *klass : predicted;
    if (active >= config.num_classes) {
      throw std::invalid_argument("--class " + std::to_string(active) + ": the model has " +
                                  std::to_string(config.num_classes) + " classes");
    }
    if (*range / *step > 50) {
      throw std::invalid_argument("--range / --step gives " +
                                  std::to_string(std::llround(*range / *step)) +
                                  " steps each way; at most 50 fit a figure");
    }
    const int64_t steps = static_cast<int64_t>(std::llround(*range / *step));
    std::vector<double> deltas;
    for (int64_t s = -steps; s <= steps; ++s) deltas.push_back(s * *step);
    const int64_t D = config.capsule_dim, columns = int64_t(deltas.size());
    // Every (dimension, delta) pair as one batch of perturbed capsules.
    auto caps = out.capsules.repeat({D * columns, 1, 1});
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t c = 0; c < columns; ++c) {
        caps[d * columns + c][active][d] += deltas[c];
      }
    }
    const auto recon =
        predictor.reconstruct(caps, at::full({D * columns}, active, at::kLong));

    viz::GridFigure figure;
    figure.scale = f->scale;
    char title[160];
    std::snprintf(title, sizeof title,
                  "Perturbing capsule %ld of test image %ld (label %s, predicted %ld, "
                  "length %.3f)",
                  static_cast<long>(active), static_cast<long>(*index), label.c_str(),
                  static_cast<long>(predicted), out.lengths[0][active].item<double>());
    figure.title = title;
    figure.sections.push_back(
        {"", {{"input", {cell(image[0])}},
              {"reconstruction", {cell(predictor.reconstruct(out.capsules,
                                                             at::full({1}, active, at::kLong))[0])}}}});
    viz::GridSection section{"One row per dimension; columns: the dimension changed by the "
                             "amount below each",
                             {}};
    for (int64_t d = 0; d < D; ++d) {
      viz::GridRow row{"dim " + std::to_string(d), {}};
      for (int64_t c = 0; c < columns; ++c) {
        char caption[16];
        std::snprintf(caption, sizeof caption, "%+.2f", deltas[c]);
        row.cells.push_back(cell(recon[d * columns + c], d + 1 == D ? caption : ""));
      }
      section.rows.push_back(row);
    }
    figure.sections.push_back(section);
    viz::write_grid_png(f->out, figure);
    std::printf("wrote %s: %ld dimensions x %ld steps of %.3g for capsule %ld of test image %ld\n",
                f->out.c_str(), static_cast<long>(D), static_cast<long>(columns), *step,
                static_cast<long>(active), static_cast<long>(*index));
    return 0;
  };
}

Runner add_plot_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Training curves of a run: loss and accuracy per epoch, "
                                         "train and test, from RUN_DIR/metrics.jsonl");
  auto run_dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>("curves.png");
  cmd->add_option("run_dir", *run_dir, "run directory written by capsnet train")->required();
  cmd->add_option("--out", *out, "PNG file to write")->capture_default_str();

  return [run_dir, out]() {
    const auto path = (std::filesystem::path(*run_dir) / "metrics.jsonl").string();
    if (!std::filesystem::is_regular_file(path)) {
      throw std::invalid_argument(path + ": not found (or not a file); is " + *run_dir +
                                  " a run directory?");
    }
    std::ifstream in(path);
    if (!in) throw std::invalid_argument(path + ": cannot be read");
    check_outputs({*out}, files_in(*run_dir));
    const auto panels = viz::training_curves(in, path);
    viz::write_plot_png(*out, "Training curves: " + *run_dir, panels);
    const auto& test_acc = panels[1].series[1];
    std::printf("wrote %s: %zu epochs, last test accuracy %.2f%%\n", out->c_str(),
                test_acc.y.size(), test_acc.y.back());
    return 0;
  };
}

} // namespace capsnet::cli
