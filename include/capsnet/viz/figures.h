#pragma once

// The figures of capsnet's commands, assembled from a model and its test
// examples: the paper's reconstructions (Figure 3, and Figure 5 for pairs),
// its capsule-dimension perturbations (Figure 4), Efficient-CapsNet's
// attention coefficients, and eval's most confident errors. Each returns a
// GridFigure for write_grid_png; what it found goes in the returned struct.

#include "capsnet/data/batch.h"
#include "capsnet/data/shape.h"
#include "capsnet/engine/test_split.h"
#include "capsnet/inference/inference.h"
#include "capsnet/viz/figure.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace capsnet::viz {

/// The `count` wrong predictions of `examples` (scores float [N, K] of their
/// images, labels [N] or [N, P]) with the longest predicted capsule, eight to
/// a row, captioned "true as predicted, length".
GridFigure worst_errors_figure(const Batch& examples, const at::Tensor& scores,
                               const DataShape& shape, int64_t count);

/// capsnet eval's pictures of `eval`: its confusion matrix into
/// `confusion_png`, titled with `checkpoint`, and its `worst` most confidently
/// wrong test examples into `worst_png` (worst_errors_figure); each is skipped
/// where its path is empty.
void draw_eval_figures(const CheckpointEval& eval, const std::string& checkpoint,
                       const std::string& confusion_png, const std::string& worst_png,
                       int64_t worst);

/// Figure 3 for write_grid_png, with what it found.
struct ReconstructionFigure {
  GridFigure figure;   ///< for write_grid_png
  int64_t shown = 0;   ///< test images in the first part
  int64_t scanned = 0; ///< test images classified
  int64_t wrong = 0;   ///< misclassified among them
};
/// Figure 3: the first `shown` of `examples` above their reconstructions from
/// the predicted capsule (Figure 5's two colours for pairs), then up to
/// `errors` misclassified ones among all of `examples` (0: no second part),
/// reconstructed from the predicted and from the true capsules.
ReconstructionFigure reconstruction_figure(const Predictor& predictor, const Batch& examples,
                                           int64_t shown, int64_t errors,
                                           const std::string& title, int scale);

/// Figure 4 for write_grid_png, with its sizes.
struct PerturbationFigure {
  GridFigure figure; ///< for write_grid_png
  /// \var capsule
  /// The capsule perturbed (the predicted class's for -1).
  /// \var dimensions
  /// Its dimensions: one row each.
  /// \var columns
  /// The perturbations of each dimension: one column each.
  int64_t capsule = 0, dimensions = 0, columns = 0;
};
/// Figure 4: the reconstructions of test image `index` of `examples` as each
/// dimension of capsule `capsule` (-1: the predicted class's) moves by
/// -range .. range in steps of `step`. Throws std::invalid_argument for an
/// index past the examples, a capsule past the classes, or over 50 steps.
PerturbationFigure perturbation_figure(const Predictor& predictor, const Batch& examples,
                                       int64_t index, int64_t capsule, double range, double step,
                                       int scale);

/// The coupling-coefficient maps for write_grid_png, with their sizes.
struct AttentionFigure {
  GridFigure figure; ///< for write_grid_png
  /// \var shown
  /// Images shown, one map each.
  /// \var inputs
  /// Primary capsules i: the rows of a map.
  /// \var classes
  /// Classes j: the columns of a map.
  int64_t shown = 0, inputs = 0, classes = 0;
  double mean_to_predicted = 0; ///< the mean coupling to the predicted class
};
/// The routing's coupling coefficients c_ij of the first `n` of `examples`,
/// one map per image (rows: primary capsules i, columns: classes j). Throws
/// std::invalid_argument for a model without fixed coefficients to show.
AttentionFigure attention_figure(const Predictor& predictor, const Batch& examples, int64_t n,
                                 const std::string& title, int scale);

} // namespace capsnet::viz
