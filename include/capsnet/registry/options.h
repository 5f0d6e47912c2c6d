#pragma once

#include "capsnet/data/folder.h"
#include "capsnet/losses/objective.h"
#include "capsnet/model/baseline_cnn.h"
#include "capsnet/model/capsnet.h"
#include "capsnet/model/efficient_capsnet.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace capsnet {

/// Which capsule masks the decoder's input during training (Section 4.1).
enum class DecoderMask {
  kLabel,      ///< the true label's capsule (the paper)
  kPrediction, ///< the longest capsule (the seed)
};

CAPSNET_ENUM_NAMES(DecoderMask, "decoder mask",
                   {{DecoderMask::kLabel, "label"}, {DecoderMask::kPrediction, "prediction"}})

/// Everything that determines a training run. Defaults are the paper's.
struct TrainOptions {
  std::string preset = "paper";  ///< the recipe the options started from (--preset)
  std::string dataset = "mnist"; ///< a name in the data set registry
  std::string data_dir; ///< empty: the data set's default directory (data/registry.h)
  int64_t epochs = 10;     ///< epochs to train in all
  int64_t batch_size = 64; ///< training images per step (--batch-size)
  double lr = 1e-3;        ///< Adam's initial learning rate
  /// Learning rate multiplier per epoch, applied smoothly at every step:
  /// lr(t) = lr * lr_decay^(t / steps_per_epoch). The authors' code multiplies
  /// lr by 0.96 every 2,000 steps of 128 images, 0.9905 per MNIST epoch.
  double lr_decay = 0.99;
  /// The schedule's floor (Efficient-CapsNet's: 5e-5); 0: none.
  double lr_min = 0;
  int64_t shift = 2; ///< random translation, in pixels, of training images
  /// Efficient-CapsNet's rotation, shift, squish and erase of training digits.
  bool digit_augment = false;
  double recon_weight = 0.0005; ///< weight of the reconstruction loss (0: none, Table 1)
  ReconstructionLoss recon_loss = ReconstructionLoss::kSumSquared; ///< sse (paper) or mse (seed)
  DecoderMask mask = DecoderMask::kLabel; ///< the decoder's mask in training
  bool normalize = false; ///< standardise inputs (the seed) instead of [0, 1] pixels
  MarginLossOptions margin; ///< the margin loss's constants (Eq. 4)
  uint64_t seed = 1;        ///< seeds the initialisation, the order and the shifts
  int threads = 0;         ///< 0: every core
  int64_t limit = 0;       ///< use the first N training images (0: all)
  int64_t test_limit = 0;  ///< evaluate on the first N test images (0: all)
  int64_t eval_batch_size = 500; ///< images per batch of the per-epoch evaluation
  /// How the digit capsules route (the same function either way).
  RoutingImpl routing = RoutingImpl::kFused;
  /// Arithmetic of the primary-capsule convolution (bf16 needs AMX or AVX512-BF16).
  Precision precision = Precision::kFp32;
  /// How capsnet's convolutions run in fp32 on the CPU (conv_algo_for()):
  /// the same function either way, rounded differently.
  ConvAlgo conv = ConvAlgo::kAuto;
  /// "auto" (a CUDA GPU when there is one), "cpu" or "cuda[:N]".
  std::string device = "auto";
  /// The network: a name in the model registry (registry/models.h). Options
  /// written before the registry call it "model_kind" (the same names).
  std::string model_name = "capsnet";
  CapsNetConfig model;        ///< the CapsNet's architecture (model_name capsnet)
  BaselineCnnConfig baseline; ///< the baseline's (model_name baseline-cnn)
  EfficientCapsNetConfig efficient; ///< Efficient-CapsNet's (model_name efficient-capsnet)
  /// The configurations of models registered outside the library, as JSON, by
  /// model name (keep_config and model_config in registry/models.h).
  std::map<std::string, nlohmann::json> model_configs;
  /// How a folder data set (dataset "folder") is read, split and augmented.
  FolderOptions folder;
  /// Training examples held out, stratified by class and drawn from the seed,
  /// on which best.pt is chosen (0: none, and best.pt is chosen on the test
  /// set, which makes its accuracy optimistic). Recorded in the checkpoints.
  int64_t validation_split = 0;
  /// Before the first step of a new run, let the model adjust its start to
  /// the first training batch (ModelInfo::calibrate; for CapsNet, the scale
  /// of the routing's input that keeps Adam's first steps from saturating the
  /// class capsules, CapsuleNetworkImpl::calibrate). MNIST is untouched.
  bool calibrate_init = true;
  /// Training examples over which batch norms' running statistics are
  /// recomputed after every epoch ("precise batch norm", BatchNormPolicy);
  /// 0: the momentum average as trained. Models without batch norm ignore it.
  int64_t precise_bn_images = 1024;

  /// The training objective these options describe (margin, recon_weight, recon_loss).
  CapsNetObjective objective() const { return {margin, recon_weight, recon_loss}; }
};

/// The options of a named preset: "paper" (the defaults above), "seed" (the
/// seed program: normalised input, unsquared margin loss, decoder masked by the
/// prediction, mean squared error, no shift, no lr decay, routing softmax over
/// the child capsules, W ~ N(0, 1) left uncalibrated; batch 64 like the paper default) or
/// "cifar10" (the paper's CIFAR-10 network on a folder of 32x32 colour
/// pictures: random 24x24 crops and flips in training, the centre crop in
/// testing, 64 primary capsule types) or "efficient-capsnet" (the authors'
/// recipe for Efficient-CapsNet on MNIST, EscVM/Efficient-CapsNet's
/// config.json: Adam at 5e-4 times 0.97 per epoch down to 5e-5, batch 16,
/// their augmentation, margin loss plus 0.392 times the mean squared
/// reconstruction error, 150 epochs).
/// Throws std::invalid_argument for another name.
TrainOptions preset_options(const std::string& name);
/// The presets' names.
std::vector<std::string> preset_names();
/// Each preset's name and what it sets, as one paragraph ("paper: ... seed: ...").
std::string presets_text();

/// Throws std::invalid_argument naming the first out-of-range option.
void validate(const TrainOptions& options);

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TrainOptions, preset, dataset, data_dir, epochs,
                                                batch_size, lr, lr_decay, shift, recon_weight,
                                                recon_loss, mask, normalize, margin, seed, threads,
                                                limit, test_limit, eval_batch_size, routing,
                                                precision, device, model_name, model, baseline,
                                                folder, lr_min, digit_augment, efficient,
                                                conv, validation_split, calibrate_init,
                                                precise_bn_images, model_configs)

/// Reads options written as JSON (config.json, checkpoints), including those
/// of runs from before the margin options were nested, and validates them.
/// Fields absent from older runs take their defaults. Throws
/// std::invalid_argument or nlohmann::json::exception naming the problem.
TrainOptions train_options_from_json(const nlohmann::json& json);

/// The most threads any option accepts.
constexpr int kMaxThreads = 1024;

/// Number of threads to use for `requested` (0: every core).
int resolve_threads(int requested);

} // namespace capsnet
