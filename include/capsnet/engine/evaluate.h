#pragma once

#include "capsnet/data/dataset.h"
#include "capsnet/engine/options.h"
#include "capsnet/model/capsnet.h"

#include <vector>

namespace capsnet {

struct EvalResult {
  double loss = 0;  ///< mean total loss (margin + weighted reconstruction)
  int64_t correct = 0;
  int64_t total = 0;
  std::vector<int64_t> class_correct;
  std::vector<int64_t> class_total;
  /// confusion[true][predicted]: counts over the test set.
  std::vector<std::vector<int64_t>> confusion;
  at::Tensor lengths; ///< capsule lengths of every test image, float [N, K]
  double seconds = 0;

  double accuracy() const { return total ? static_cast<double>(correct) / total : 0.0; }
  int64_t errors() const { return total - correct; }
};

/// Loss terms of one batch, as the training step and evaluation compute them.
struct BatchLoss {
  at::Tensor total;
  at::Tensor margin;
  at::Tensor reconstruction; ///< unweighted; undefined when recon_weight is 0
};

/// Margin loss plus recon_weight times the reconstruction loss against `images`.
BatchLoss capsnet_loss(const CapsNetOutput& out, const at::Tensor& images,
                       const at::Tensor& labels, const TrainOptions& options);

/// Test-time evaluation: no shift, decoder masked by the prediction, no grad.
/// Uses options.eval_batch_size, normalize, margin and reconstruction settings.
EvalResult evaluate(CapsNet& model, const Dataset& data, const TrainOptions& options);

} // namespace capsnet
