#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/data/shape.h"
#include "capsnet/registry/options.h"
#include "capsnet/engine/replicas.h"
#include "capsnet/registry/task.h"
#include "capsnet/model/capsnet.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace capsnet {

struct LoadedCheckpoint;

/// Test metrics. With one label per image, `correct` counts right
/// predictions (the argmax); with P labels per image, images whose P highest
/// scores are exactly their P classes (MultiMNIST's "both digits right").
struct EvalResult {
  double loss = 0; ///< mean loss of the task's objective
  int64_t correct = 0; ///< images predicted exactly right
  int64_t total = 0;   ///< images evaluated
  /// Per class: images containing it, and those of them whose prediction includes it.
  std::vector<int64_t> class_correct;
  std::vector<int64_t> class_total; ///< per class: the images containing it
  /// confusion[true][predicted] over the test set; one label per image only (else empty).
  std::vector<std::vector<int64_t>> confusion;
  at::Tensor scores; ///< scores of every test image (capsule lengths), float [N, K], on the CPU
  double seconds = 0; ///< seconds the evaluation took

  /// correct / total, in [0, 1] (0 without images).
  double accuracy() const { return total ? static_cast<double>(correct) / total : 0.0; }
  /// Images not predicted exactly right.
  int64_t errors() const { return total - correct; }
};

/// The predicted classes: argmax [B] when labels are [B], the P highest
/// scores (sorted by class) [B, P] when labels are [B, P].
at::Tensor predicted_classes(const at::Tensor& scores, const at::Tensor& labels);

/// A label or a prediction as text: "7", or "2,7" for a pair (any shape);
/// by the classes' names ("cat") where `shape` has them.
std::string classes_text(const at::Tensor& classes, const DataShape& shape = {});

/// The examples predicted wrongly, of scores float [N, K] and labels [N] or
/// [N, P]: with one label, those whose longest capsule is not their class;
/// with two (MultiMNIST), the pairs whose two longest capsules are not their
/// two classes.
struct WrongPredictions {
  at::Tensor index;      ///< long [W], the wrong examples in their order
  at::Tensor predicted;  ///< every example's predicted classes: [N], or [N, P] sorted
  at::Tensor confidence; ///< every example's (shorter) predicted capsule length, [N]
  /// The first `n` of `index` by confidence, most confident first.
  at::Tensor most_confident(int64_t n) const;
};
WrongPredictions wrong_predictions(const at::Tensor& scores, const at::Tensor& labels);

/// What an evaluation report says besides the result.
struct EvalReport {
  /// The checkpoint's path.
  std::string checkpoint, dataset, preset;
  /// \var std::string EvalReport::dataset
  /// The data set evaluated on.
  /// \var std::string EvalReport::preset
  /// The preset of the checkpoint's run.
  int64_t epoch = 0;                      ///< epochs the checkpoint was trained for
  Precision precision = Precision::kFp32; ///< the arithmetic the evaluation ran in
  DataShape shape; ///< the classes' names
};
/// `capsnet eval --json`'s object: accuracy, errors, loss, per-class counts
/// with the classes' names, the confusion matrix.
nlohmann::json eval_json(const EvalResult& result, const EvalReport& report);
/// `capsnet eval`'s text: the accuracy line, per-class accuracy and the
/// confusion matrix, each line ending in a newline.
std::string eval_text(const EvalResult& result, const EvalReport& report);

/// Images whose prediction is exactly right (see EvalResult::correct).
int64_t count_correct(const at::Tensor& scores, const at::Tensor& labels);
/// The same as an int64 0-dim tensor on the scores' device, read by nobody.
at::Tensor correct_on_device(const at::Tensor& scores, const at::Tensor& labels);

/// Adds one batch's counts to `result` (not the loss): scores [B, K], labels
/// [B] or [B, P].
void accumulate(EvalResult& result, const at::Tensor& scores, const at::Tensor& labels);

/// Evaluates `task` on every example of `source`, in order, without
/// augmentation or gradients, in eval mode (restored afterwards). With
/// `replicas`, each rank evaluates its contiguous share of the examples and
/// every rank gets the totals (loss, counts, confusion, all the scores).
EvalResult evaluate(Task& task, const BatchSource& source, int64_t batch_size,
                    Replicas* replicas = nullptr);

/// A CapsNet on a test set as `options` describe: no shift, decoder masked by
/// the prediction, options.eval_batch_size, normalize, margin and
/// reconstruction settings.
EvalResult evaluate(CapsNet& model, const Dataset& data, const TrainOptions& options);
/// Table 1's baseline CNN on a test set (cross-entropy; options.eval_batch_size).
EvalResult evaluate(BaselineCnn& model, const Dataset& data, const TrainOptions& options);

/// Whichever network a checkpoint holds, on its device, as above.
EvalResult evaluate(LoadedCheckpoint& loaded, const Dataset& data, const TrainOptions& options);

} // namespace capsnet
