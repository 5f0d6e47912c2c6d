#pragma once

#include "capsnet/data/dataset.h"
#include "capsnet/registry/models.h"
#include "capsnet/registry/options.h"
#include "capsnet/model/capsule_network.h"

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <string>
#include <vector>

namespace capsnet {

/// What the network says about a batch of images.
struct Classification {
  at::Tensor capsules;    ///< digit capsules, [B, K, D]
  at::Tensor lengths;     ///< their lengths, the class probabilities, [B, K]
  at::Tensor predictions; ///< argmax of lengths, int64 [B]
};

/// A trained capsule network (CapsNet, Efficient-CapsNet) ready for inference: no gradients, eval mode, input
/// standardised when the model was trained so. Images are float [B, C, H, W]
/// with pixels in [0, 1], ink bright (as MNIST); see load_digit_image (image/image.h) for files.
class Predictor {
 public:
  /// Reads a checkpoint written by `capsnet train`. Throws CheckpointError for
  /// a bad file, or one whose model lacks capsules or any of `needs`, naming
  /// the model and `what` (the command: "capsnet reconstruct").
  static Predictor load(const std::string& checkpoint, const std::string& what = "prediction",
                        const std::vector<Capability>& needs = {});
  /// `shape`: what the model was trained on (its class names, statistics and
  /// preparation); the default is MNIST's.
  Predictor(CapsuleNetworkPtr model, TrainOptions options, DataShape shape = {});

  /// A picture file's bytes (PNG, JPEG, PGM/PPM, BMP, GIF) prepared as the
  /// model's training data was: float [1, C, S, S] in [0, 1]. Digit models
  /// (Preparation::kDigit): as MNIST was made (prepare_digit_image); others:
  /// converted to the model's channels, resized and centre-cropped. Throws
  /// ImageError naming `name`.
  at::Tensor prepare_picture(const std::string& bytes, const std::string& name) const;

  /// Runs in chunks of `batch_size` images.
  Classification classify(const at::Tensor& images) const;
  /// Decoder output from `capsules` masked to `classes`: [B, C, H, W] in [0, 1].
  at::Tensor reconstruct(const at::Tensor& capsules, const at::Tensor& classes) const;

  /// The routing's coupling coefficients of `images`, [B, N_in, K], or an
  /// undefined tensor when the network has none to show (CapsuleNetworkImpl::coupling).
  at::Tensor coupling(const at::Tensor& images) const;

  /// Moves the model; inputs follow it and results come back on the CPU.
  void to(const c10::Device& device);

  /// The network.
  const CapsuleNetworkPtr& model() const { return model_; }
  /// The network's input and capsule sizes.
  CapsuleShape sizes() const { return model_->shape(); }
  /// The options the model was trained with.
  const TrainOptions& options() const { return options_; }
  /// What the model was trained on.
  const DataShape& shape() const { return shape_; }
  /// The name of class k (DataShape::class_name).
  std::string class_name(int64_t k) const { return shape_.class_name(k); }
  int64_t batch_size = 500; ///< images per forward pass of classify()

 private:
  CapsuleNetworkPtr model_;
  TrainOptions options_;
  DataShape shape_;
  c10::Device device_{c10::kCPU};
};

/// Dataset images (uint8 [N, 1, H, W]) as float in [0, 1].
at::Tensor to_unit_float(const at::Tensor& images);

/// One image given to `capsnet predict`, named for its report.
struct NamedImage {
  std::string name; ///< the file, or file[k] for the k-th image of an IDX file
  at::Tensor image; ///< float [1, C, S, S] in [0, 1], as the model takes it
};

/// The images of one file for `predictor`'s model: an IDX file of [N, S, S]
/// grey images of the model's size (used as they are, like MNIST's own), or
/// one picture (PNG, JPEG, BMP, GIF, PGM/PPM) prepared as the model's data was
/// (Predictor::prepare_picture). Throws DataError or ImageError naming the file.
std::vector<NamedImage> read_prediction_inputs(const std::string& path,
                                               const Predictor& predictor);

/// `capsnet predict` over files: each file's images (read_prediction_inputs)
/// classified in one batch, one row per image (prediction_json) passed to
/// `on_row` as it is ready, with "preprocessed": the path of the image the
/// network saw, written as SAVE_DIR/N-NAME.png when `save_dir` is not empty
/// (N counting the rows, so that two inputs of one name never collide; none
/// may be one of `inputs_read`). A file that cannot be read gives a row
/// {"file", "error"} and is counted; returns the files that could not be read.
int predict_files(const Predictor& predictor, const std::vector<std::string>& files,
                  const std::string& save_dir, const std::vector<std::string>& inputs_read,
                  const std::function<void(const nlohmann::json& row)>& on_row);

/// A row of predict_files as text: "FILE: CLASS (length L)" and every class's
/// length, or "FILE: ERROR"; ends in a newline.
std::string prediction_text(const nlohmann::json& row, const Predictor& predictor);

/// One image's answer as `capsnet predict --json` writes it: file, predicted
/// class and its name, every class capsule's length. `k` indexes `result`.
nlohmann::json prediction_json(const std::string& name, const Classification& result, int64_t k,
                               const Predictor& predictor);

} // namespace capsnet
