#pragma once

// The model registry: the one list of the networks capsnet trains, beside
// the data-set registry (data/registry.h). To add a model, add an entry in
// models.cpp, or call register_model() from your own program (docs/architecture.md,
// "Adding a model").

#include "capsnet/data/registry.h"
#include "capsnet/data/shape.h"
#include "capsnet/registry/flops.h"
#include "capsnet/registry/options.h"
#include "capsnet/registry/task.h"

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace capsnet {

/// The shape of the examples a data set's batches hold and how they were
/// prepared: `train` is its loaded training split (generated data sets make
/// images of their own size; a folder's are cropped to `crop` when > 0), with
/// its class names, and a folder's statistics and recorded test split.
DataShape data_shape(const DatasetInfo& info, const Dataset& train, int64_t crop = 0);

/// What to load for `split` of the data `options` name, from `dir` (empty:
/// options.data_dir, else the data set's default). `trained`: the shape a
/// checkpoint recorded, whose folder size, channels and test split (when
/// `dir` is the run's own folder) the load keeps.
DataRequest data_request(const TrainOptions& options, Split split, const std::string& dir = "",
                         const DataShape* trained = nullptr);

/// How the examples are prepared for a model trained with `options` on data
/// of `shape` (shift, augmentation, crop, standardisation and its statistics).
SourceOptions source_options(const TrainOptions& options, const DataShape& shape);

/// What a model offers beyond training and evaluation; the commands that need
/// one ask the model's entry and refuse a model without it.
enum class Capability {
  kCapsules, ///< capsule lengths and poses (predict, serve)
  kDecoder,  ///< a decoder from capsules to images (reconstruct, perturb)
  kExport,   ///< `capsnet export --format pytorch`
  kBf16,     ///< a bf16 path for --precision bf16
  kConvAlgo, ///< a choice of how its convolutions run (--conv)
};

CAPSNET_ENUM_NAMES(Capability, "capability",
                   {{Capability::kCapsules, "capsule lengths and poses"},
                    {Capability::kDecoder, "a decoder for reconstructions"},
                    {Capability::kExport, "a PyTorch export"},
                    {Capability::kBf16, "a bf16 path"},
                    {Capability::kConvAlgo, "a choice of convolution algorithm"}})

using ModulePtr = std::shared_ptr<torch::nn::Module>;

/// One registered model.
struct ModelInfo {
  std::string name;        ///< what --model takes and checkpoints record: "capsnet"
  std::string description; ///< one line for help texts
  std::vector<Capability> capabilities; ///< what the model offers the commands
  /// A freshly initialised network for data of `shape` as `options` describe
  /// it (the caller seeds torch's generator). Throws TrainingError naming the
  /// mismatch when the options do not fit the shape.
  std::function<ModulePtr(const DataShape& shape, const TrainOptions& options)> build;
  /// The network `build` made (or a checkpoint's) with its objective.
  std::function<std::unique_ptr<Task>(const ModulePtr& module, const TrainOptions& options)> task;
  /// What the training log says of it after "batch N, T threads, ".
  std::function<std::string(const TrainOptions& options)> summary;
  /// Throws std::invalid_argument naming the first inconsistent setting of the
  /// model's own (validate(TrainOptions) calls it); may be empty.
  std::function<void(const TrainOptions& options)> validate;
  /// Sets the model's input size, channels and classes in `options` to the
  /// data's, so that `build` makes a network for it; may be empty (the
  /// options must then fit the data as given).
  std::function<void(TrainOptions& options, const DataShape& shape)> fit;
  /// A new run's data-dependent start (--calibrate-init): adjusts the network
  /// `build` made to `images` (float [B, C, H, W] on the CPU, a training batch,
  /// as the first step gets it) and records what it set in `options`; returns
  /// a line for the log, empty when nothing changed. May be empty.
  std::function<std::string(torch::nn::Module& network, TrainOptions& options,
                            const at::Tensor& images)>
      calibrate;

  /// The model's own configuration (its architecture) in `options`, as JSON:
  /// what --model-config edits, the resume check compares and export writes.
  /// keep_config() makes both functions for a model's own Config type.
  std::function<nlohmann::json(const TrainOptions& options)> config;
  /// Sets the model's configuration in `options` from JSON shaped as `config`
  /// gives it; throws nlohmann::json::exception or std::invalid_argument for a
  /// value the configuration cannot take.
  std::function<void(TrainOptions& options, const nlohmann::json& config)> set_config;
  /// Floating-point operations of one image, from the configuration (bench's
  /// utilisation); may be empty.
  std::function<ModelFlops(const TrainOptions& options)> flops;
  /// The options `capsnet bench --model NAME` times the model with (its
  /// recipe); empty: bench refuses the model. Its network must be a
  /// CapsuleNetworkImpl taking 28x28 grey images of 10 classes.
  std::function<TrainOptions()> bench_options;

  /// Whether `capabilities` holds `capability`.
  bool offers(Capability capability) const;
  /// Throws std::invalid_argument unless the model offers `capability`:
  /// "`what` needs ..., which model 'NAME' does not offer".
  void require(Capability capability, const std::string& what) const;
};

/// `options` with the model's architecture fitted to data of `shape`
/// (ModelInfo::fit), validated; throws std::invalid_argument when the data
/// cannot feed the network (images too small for its convolutions).
TrainOptions fitted_to(const TrainOptions& options, const DataShape& shape);

/// `options` with `patch`, a JSON object of fields of the model's own
/// configuration (--model-config), merged over it. Throws
/// std::invalid_argument naming a field the configuration does not have (and
/// listing those it has) or a value it cannot take.
TrainOptions with_model_config(const TrainOptions& options, const nlohmann::json& patch);
/// --model-config's value as JSON; a text that is not JSON is refused with
/// std::invalid_argument.
nlohmann::json parse_model_config(const std::string& text);

/// The configuration of type Config that keep_config gave model `name`:
/// options.model_configs[name] merged over `defaults`.
template <class Config>
Config model_config(const TrainOptions& options, const std::string& name,
                    const Config& defaults = Config{}) {
  nlohmann::json merged = defaults;
  const auto stored = options.model_configs.find(name);
  if (stored != options.model_configs.end()) merged.merge_patch(stored->second);
  return merged.get<Config>();
}

/// Gives `info` (its name set) a configuration of its own type Config (with
/// nlohmann's to_json and from_json): kept as JSON in
/// TrainOptions::model_configs under the model's name, so that it is written
/// to config.json and the checkpoints, compared on --resume and edited by
/// --model-config. `defaults` stand for what a run did not set.
template <class Config>
void keep_config(ModelInfo& info, const Config& defaults = Config{}) {
  if (info.name.empty()) throw std::invalid_argument("keep_config: name the model first");
  const auto name = info.name;
  info.config = [name, defaults](const TrainOptions& options) {
    return nlohmann::json(model_config(options, name, defaults));
  };
  info.set_config = [name](TrainOptions& options, const nlohmann::json& config) {
    options.model_configs[name] = nlohmann::json(config.get<Config>());
  };
}

/// Every registered model, in the order help texts list them (a deque:
/// references to entries stay valid when models are added).
const std::deque<ModelInfo>& registered_models();
/// The names, for the command line and messages.
std::vector<std::string> model_names();
/// The models `capsnet bench` can time (those with a bench recipe).
std::vector<std::string> bench_models();
/// The names of the models that offer `capability`, comma-separated, for
/// messages ("" when none does).
std::string models_offering(Capability capability);
/// The entry called `name`; throws std::invalid_argument listing the known names.
const ModelInfo& model_info(const std::string& name);
/// Adds a model (a program's own, a test's); throws std::invalid_argument when
/// the name is taken or a function is missing. Call it before anything reads
/// the registry on another thread (before parsing options).
void register_model(ModelInfo info);

} // namespace capsnet
