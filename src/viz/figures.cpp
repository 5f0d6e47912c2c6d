#include "capsnet/viz/figures.h"

#include "capsnet/engine/evaluate.h"
#include "capsnet/image/image.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace capsnet::viz {

namespace {

Cell cell(const at::Tensor& image, const std::string& caption = "") {
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
Cell recon_cell(const at::Tensor& recon, const std::string& caption) {
  if (recon.dim() == 3) return cell(recon, caption);
  static const Tint tints[] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  Cell c{to_gray_image(recon[0]), caption, {}};
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
  WrongPredictions wrong;
  bool pairs = false;
};

// The first part: the first `shown` test images above their reconstructions.
GridSection reconstruction_section(const Predictor& predictor, const Classified& c,
                                   int64_t shown) {
  const auto& predicted = c.wrong.predicted;
  const bool pairs = c.pairs;
  const int per_row = 16;
  GridSection section{
      pairs ? "Test images (top, L: the two labels) and the reconstructions from the capsules "
              "of the two predicted classes (bottom, R: those classes), the smaller class in "
              "red, the larger in green (Figure 5)"
            : "Test digits (top) and their reconstructions from the predicted capsule "
              "(bottom, captioned with the prediction)",
      {}};
  const auto chosen = predicted.narrow(0, 0, shown);
  const auto recon = reconstructions(predictor, c.out.capsules.narrow(0, 0, shown), chosen);
  for (int64_t start = 0; start < shown; start += per_row) {
    GridRow inputs{"input", {}}, outputs{"reconstruction", {}};
    for (int64_t i = start; i < std::min(shown, start + per_row); ++i) {
      inputs.cells.push_back(cell(
          c.images[i], (pairs ? "L:" : "label ") + classes_text(c.labels[i], predictor.shape())));
      outputs.cells.push_back(recon_cell(
          recon[i], (pairs ? "R:" : "pred ") + classes_text(chosen[i], predictor.shape())));
    }
    section.rows.push_back(inputs);
    section.rows.push_back(outputs);
  }
  return section;
}

// The second part: up to `errors` misclassified images, in test order,
// reconstructed from the predicted and from the true capsules.
GridSection errors_section(const Predictor& predictor, const Classified& c, int64_t errors,
                           int64_t scanned) {
  const auto& predicted = c.wrong.predicted;
  const bool pairs = c.pairs;
  const int64_t wrong_count = c.wrong.index.size(0);
  const int64_t k = std::min(errors, wrong_count);
  GridSection section{
      std::string(pairs ? "Misclassified pairs" : "Misclassified digits") +
          ": input, reconstruction from the predicted " + (pairs ? "capsules" : "capsule") +
          ", from the true " + (pairs ? "capsules" : "capsule") + " (" +
          std::to_string(wrong_count) + " errors among " + std::to_string(scanned) +
          " test images)",
      {}};
  if (k == 0) return section;
  const auto idx = c.wrong.index.narrow(0, 0, k);
  const auto caps = c.out.capsules.index_select(0, idx);
  const auto from_pred = reconstructions(predictor, caps, predicted.index_select(0, idx));
  const auto truth_classes = pairs ? std::get<0>(c.labels.sort(1)) : c.labels;
  const auto from_true = reconstructions(predictor, caps, truth_classes.index_select(0, idx));
  GridRow row{"", {}};
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = idx[j].item<int64_t>();
    const auto truth = classes_text(truth_classes[i], predictor.shape());
    const auto pred = classes_text(predicted[i], predictor.shape());
    row.cells.push_back(cell(c.images[i], "#" + std::to_string(i) + " (" + truth + ")"));
    row.cells.push_back(recon_cell(from_pred[j], "as " + pred));
    row.cells.push_back(recon_cell(from_true[j], "as " + truth));
    if (row.cells.size() >= 12 || j + 1 == k) {
      section.rows.push_back(row);
      row.cells.clear();
    }
  }
  return section;
}

// A map of `values` [rows, columns] in [0, 1], each value a block x block square.
GrayImage block_map(const at::Tensor& values, int64_t block) {
  const auto v = values.contiguous();
  const int64_t rows = v.size(0), columns = v.size(1);
  GrayImage map(static_cast<int>(columns * block), static_cast<int>(rows * block));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < columns; ++j) {
      const float value = v[i][j].item<float>();
      for (int64_t y = 0; y < block; ++y) {
        for (int64_t x = 0; x < block; ++x) {
          map.at(static_cast<int>(j * block + x), static_cast<int>(i * block + y)) = value;
        }
      }
    }
  }
  return map;
}

} // namespace

void draw_eval_figures(const CheckpointEval& eval, const std::string& checkpoint,
                       const std::string& confusion_png, const std::string& worst_png,
                       int64_t worst) {
  const auto& result = eval.result;
  if (!confusion_png.empty()) {
    write_confusion_png(confusion_png,
                        "Confusion matrix: " + checkpoint + " on " + eval.options.dataset +
                            " test (" + std::to_string(result.total) + " images)",
                        result.confusion);
  }
  if (!worst_png.empty()) {
    const auto examples = test_examples(eval.options, eval.data, 0, eval.loaded.shape);
    write_grid_png(worst_png, worst_errors_figure(examples, result.scores, eval.loaded.shape, worst));
  }
}

GridFigure worst_errors_figure(const Batch& examples, const at::Tensor& scores,
                               const DataShape& shape, int64_t count) {
  const auto& labels = examples.labels;
  const bool pairs = labels.dim() == 2;
  const auto wrong = wrong_predictions(scores, labels);
  const auto chosen = wrong.most_confident(count);
  const int64_t n = chosen.size(0);
  GridFigure figure;
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
    const int64_t i = chosen[k].item<int64_t>();
    if (k % 8 == 0) rows.emplace_back();
    char caption[64];
    std::snprintf(caption, sizeof caption, "%s as %s, %.2f", classes_text(labels[i], shape).c_str(),
                  classes_text(wrong.predicted[i], shape).c_str(),
                  wrong.confidence[i].item<double>());
    rows.back().cells.push_back({to_gray_image(examples.images[i]), caption, {}});
  }
  return figure;
}

ReconstructionFigure reconstruction_figure(const Predictor& predictor, const Batch& examples,
                                           int64_t shown, int64_t errors,
                                           const std::string& title, int scale) {
  ReconstructionFigure result;
  result.shown = std::min(shown, examples.size());
  result.scanned = errors > 0 ? examples.size() : result.shown;
  const auto images = examples.images.narrow(0, 0, result.scanned);
  const auto labels = examples.labels.narrow(0, 0, result.scanned);
  const auto out = predictor.classify(images);
  // What the figure reconstructs from: the predicted capsule, or (MultiMNIST)
  // the capsules of the two predicted classes.
  const Classified classified{images, labels, out, wrong_predictions(out.lengths, labels),
                              labels.dim() == 2};
  result.figure.scale = scale;
  result.figure.title = title;
  result.figure.sections.push_back(reconstruction_section(predictor, classified, result.shown));
  if (errors > 0) {
    result.figure.sections.push_back(errors_section(predictor, classified, errors, result.scanned));
    result.wrong = classified.wrong.index.size(0);
  }
  return result;
}

PerturbationFigure perturbation_figure(const Predictor& predictor, const Batch& examples,
                                       int64_t index, int64_t capsule, double range, double step,
                                       int scale) {
  if (index >= examples.size()) {
    throw std::invalid_argument("--index " + std::to_string(index) + " is past the end of the " +
                                std::to_string(examples.size()) + " test images");
  }
  const auto image = examples.images.narrow(0, index, 1);
  const auto label = classes_text(examples.labels[index], predictor.shape());
  const auto out = predictor.classify(image);
  const int64_t predicted = out.predictions[0].item<int64_t>();
  const auto config = predictor.sizes();
  const int64_t active = capsule >= 0 ? capsule : predicted;
  if (active >= config.num_classes) {
    throw std::invalid_argument("--class " + std::to_string(active) + ": the model has " +
                                std::to_string(config.num_classes) + " classes");
  }
  if (range / step > 50) {
    throw std::invalid_argument("--range / --step gives " +
                                std::to_string(std::llround(range / step)) +
                                " steps each way; at most 50 fit a figure");
  }
  const int64_t steps = static_cast<int64_t>(std::llround(range / step));
  std::vector<double> deltas;
  for (int64_t s = -steps; s <= steps; ++s) deltas.push_back(s * step);
  const int64_t D = config.capsule_dim, columns = int64_t(deltas.size());
  // Every (dimension, delta) pair as one batch of perturbed capsules.
  auto caps = out.capsules.repeat({D * columns, 1, 1});
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t c = 0; c < columns; ++c) caps[d * columns + c][active][d] += deltas[c];
  }
  const auto recon = predictor.reconstruct(caps, at::full({D * columns}, active, at::kLong));

  PerturbationFigure result{{}, active, D, columns};
  auto& figure = result.figure;
  figure.scale = scale;
  char title[160];
  std::snprintf(title, sizeof title,
                "Perturbing capsule %ld of test image %ld (label %s, predicted %ld, length %.3f)",
                static_cast<long>(active), static_cast<long>(index), label.c_str(),
                static_cast<long>(predicted), out.lengths[0][active].item<double>());
  figure.title = title;
  const auto unperturbed = predictor.reconstruct(out.capsules, at::full({1}, active, at::kLong));
  figure.sections.push_back(
      {"", {{"input", {cell(image[0])}}, {"reconstruction", {cell(unperturbed[0])}}}});
  GridSection section{"One row per dimension; columns: the dimension changed by the amount "
                      "below each",
                      {}};
  for (int64_t d = 0; d < D; ++d) {
    GridRow row{"dim " + std::to_string(d), {}};
    for (int64_t c = 0; c < columns; ++c) {
      char caption[16];
      std::snprintf(caption, sizeof caption, "%+.2f", deltas[c]);
      row.cells.push_back(cell(recon[d * columns + c], d + 1 == D ? caption : ""));
    }
    section.rows.push_back(row);
  }
  figure.sections.push_back(section);
  return result;
}

AttentionFigure attention_figure(const Predictor& predictor, const Batch& examples, int64_t n,
                                 const std::string& title, int scale) {
  AttentionFigure result;
  result.shown = std::min(n, examples.size());
  const auto images = examples.images.narrow(0, 0, result.shown);
  const auto coupling = predictor.coupling(images);
  if (!coupling.defined()) {
    throw std::invalid_argument(
        "capsnet attention: model '" + predictor.options().model_name +
        "' has no attention coefficients to show (its routing's coefficients depend on the "
        "iteration); use a checkpoint of efficient-capsnet");
  }
  const auto out = predictor.classify(images);
  result.inputs = coupling.size(1);
  result.classes = coupling.size(2);
  result.figure.scale = scale;
  result.figure.title = title;
  GridSection section{"c_ij: rows are the " + std::to_string(result.inputs) +
                          " primary capsules i, columns the classes j; white is 1",
                      {}};
  for (int64_t b = 0; b < result.shown; ++b) {
    const auto label = classes_text(examples.labels[b], predictor.shape());
    const auto predicted = out.predictions[b].item<int64_t>();
    GridRow row{label + " as " + predictor.class_name(predicted), {}};
    row.cells.push_back(cell(images[b]));
    row.cells.push_back({block_map(coupling[b], /*block=*/3), "", {}});
    section.rows.push_back(row);
  }
  result.figure.sections.push_back(section);
  result.mean_to_predicted =
      coupling
          .gather(2, out.predictions.view({-1, 1, 1}).expand({result.shown, result.inputs, 1}))
          .mean()
          .item<double>();
  return result;
}

} // namespace capsnet::viz
