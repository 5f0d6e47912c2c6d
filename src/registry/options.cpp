#include "capsnet/registry/options.h"

#include "capsnet/data/registry.h"
#include "capsnet/registry/models.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

namespace capsnet {

namespace {

// Section 7: 24x24 patches of the 32x32 images, 64 primary capsule types.
void cifar10_preset(TrainOptions& options) {
  options.dataset = "folder";
  options.folder.image_size = 32;
  options.folder.crop = 24;
  options.folder.channels = 3;
  options.folder.augment = true;
  options.shift = 0;
  options.model.primary_types = 64;
}

// EscVM/Efficient-CapsNet at 4b337f5: config.json, utils/tools.py
// (learn_scheduler, marginLoss), models/model.py (Adam, loss weights).
void efficient_capsnet_preset(TrainOptions& options) {
  options.model_name = "efficient-capsnet";
  options.epochs = 150;
  options.batch_size = 16;
  options.lr = 5e-4;
  options.lr_decay = 0.97;
  options.lr_min = 5e-5;
  options.shift = 0;
  options.digit_augment = true;
  options.recon_loss = ReconstructionLoss::kMeanSquared;
  options.recon_weight = 0.392; // lmd_gen; 0.392 = 0.0005 * 784: the paper's weight
}

void seed_preset(TrainOptions& options) {
  options.lr_decay = 1.0;
  options.shift = 0;
  options.recon_loss = ReconstructionLoss::kMeanSquared;
  options.mask = DecoderMask::kPrediction;
  options.normalize = true;
  options.margin.squared = false;
  options.model.routing_softmax = RoutingSoftmax::kChildren;
  options.model.w_init_std = 1.0;
  options.calibrate_init = false; // the seed's N(0, 1) weights as they are
}

struct Preset {
  const char* name;
  void (*apply)(TrainOptions& options); // over the defaults (the paper's)
  const char* description;
};

const std::vector<Preset>& presets() {
  static const std::vector<Preset> table = {
      {"paper", [](TrainOptions&) {}, "the paper's settings (the default)"},
      {"seed", seed_preset,
       "the seed program's departures (normalised input, unsquared margin loss, prediction "
       "mask, MSE, no shift, batch 64, no lr decay, routing softmax over children, W ~ N(0,1))"},
      {"cifar10", cifar10_preset,
       "the paper's CIFAR-10 network on a folder of pictures (--dataset folder, 32x32 colour, "
       "random 24x24 crops and flips, 64 primary capsule types)"},
      {"efficient-capsnet", efficient_capsnet_preset,
       "Efficient-CapsNet with its authors' recipe (batch 16, Adam 5e-4 x 0.97 per epoch down "
       "to 5e-5, their augmentation, 0.392 x the mean squared reconstruction error, 150 "
       "epochs)"}};
  return table;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& preset : presets()) names.push_back(preset.name);
  return names;
}

std::string presets_text() {
  std::string text;
  for (const auto& preset : presets()) {
    text += std::string(text.empty() ? "" : " ") + preset.name + ": " + preset.description + ".";
  }
  return text;
}

TrainOptions preset_options(const std::string& name) {
  for (const auto& preset : presets()) {
    if (name != preset.name) continue;
    TrainOptions options;
    options.preset = name;
    preset.apply(options);
    return options;
  }
  std::string names;
  for (const auto& known : preset_names()) names += (names.empty() ? "'" : ", '") + known + "'";
  throw std::invalid_argument("unknown preset '" + name + "': expected " + names);
}

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

} // namespace

void validate(const TrainOptions& o) {
  const auto names = dataset_names();
  std::string known;
  for (const auto& name : names) known += (known.empty() ? "" : ", ") + name;
  require(std::find(names.begin(), names.end(), o.dataset) != names.end(),
          "--dataset: unknown data set '" + o.dataset + "', expected one of " + known);
  require(o.device == "auto" || o.device == "cpu" || o.device.rfind("cuda", 0) == 0,
          "--device must be auto, cpu or cuda[:N], got '" + o.device + "'");
  require(o.epochs >= 1, "--epochs must be at least 1, got " + std::to_string(o.epochs));
  require(o.batch_size >= 1, "--batch-size must be at least 1, got " + std::to_string(o.batch_size));
  require(o.eval_batch_size >= 1, "--eval-batch-size must be at least 1");
  require(std::isfinite(o.lr) && o.lr > 0, "--lr must be a positive number, got " + std::to_string(o.lr));
  require(std::isfinite(o.lr_decay) && o.lr_decay > 0 && o.lr_decay <= 1,
          "--lr-decay must be in (0, 1], got " + std::to_string(o.lr_decay));
  require(std::isfinite(o.lr_min) && o.lr_min >= 0 && o.lr_min <= o.lr,
          "--lr-min must be in [0, --lr], got " + std::to_string(o.lr_min));
  const auto& entry = model_info(o.model_name);
  if (entry.validate) entry.validate(o);
  require(o.shift >= 0 && o.shift < o.model.image_size,
          "--shift must be in [0, image size), got " + std::to_string(o.shift));
  require(std::isfinite(o.recon_weight) && o.recon_weight >= 0,
          "--recon-weight must be >= 0, got " + std::to_string(o.recon_weight));
  require(o.threads >= 0 && o.threads <= kMaxThreads,
          "--threads must be in [0, " + std::to_string(kMaxThreads) + "] (0: every core), got " +
              std::to_string(o.threads));
  require(o.epochs <= 1000000, "--epochs must be at most 1000000, got " + std::to_string(o.epochs));
  require(o.batch_size <= 65536 && o.eval_batch_size <= 65536,
          "--batch-size and --eval-batch-size must be at most 65536");
  // Eq. 4: a present class is pushed above m+, an absent one below m-, both
  // capsule lengths in [0, 1); lambda down-weights the absent classes.
  const auto& m = o.margin;
  require(std::isfinite(m.m_plus) && m.m_plus > 0 && m.m_plus <= 1,
          "--m-plus must be in (0, 1], got " + std::to_string(m.m_plus));
  require(std::isfinite(m.m_minus) && m.m_minus >= 0 && m.m_minus < m.m_plus,
          "--m-minus must be in [0, m+), got " + std::to_string(m.m_minus));
  require(std::isfinite(m.lambda) && m.lambda >= 0 && m.lambda <= 1,
          "--margin-lambda must be in [0, 1], got " + std::to_string(m.lambda));
  require(o.recon_weight <= 1000, "--recon-weight must be at most 1000, got " +
                                      std::to_string(o.recon_weight));
  require(o.limit >= 0, "--limit must be >= 0, got " + std::to_string(o.limit));
  require(o.test_limit >= 0, "--test-limit must be >= 0, got " + std::to_string(o.test_limit));
  require(o.precise_bn_images >= 0 && o.precise_bn_images <= 10000000,
          "--precise-bn-images must be in [0, 10000000], got " +
              std::to_string(o.precise_bn_images));
  require(o.validation_split >= 0 && o.validation_split <= 10000000,
          "--validation-split must be in [0, 10000000], got " +
              std::to_string(o.validation_split));
  o.folder.validate();
  require(o.dataset != "folder" || !o.data_dir.empty(),
          "--dataset folder needs --data DIR, the folder of your pictures (one sub-folder per "
          "class)");
  require(!o.digit_augment || o.dataset != "folder",
          "--digit-augment is for digits; pictures of a folder take --augment");
  require(o.dataset == "folder" || (o.folder.crop == 0 && !o.folder.augment),
          "--crop and --augment apply to --dataset folder; digits take --shift");
  o.model.validate();
}

namespace {

// nlohmann converts a JSON float into an integer field with a plain cast,
// undefined behaviour when it does not fit (found by fuzz_options: 1e39 as
// epochs). Integer fields, as the defaults' JSON shows them, must hold integers.
void require_integers_where_expected(const nlohmann::json& given, const nlohmann::json& like,
                                     const std::string& where) {
  if (like.is_object() && given.is_object()) {
    for (const auto& [key, value] : given.items()) {
      if (like.contains(key)) require_integers_where_expected(value, like.at(key), where + key + ".");
    }
  } else if (like.is_array() && given.is_array()) {
    const nlohmann::json element = like.empty() ? nlohmann::json(0) : like.front();
    for (const auto& value : given) require_integers_where_expected(value, element, where);
  } else if (like.is_number_integer() && given.is_number() && !given.is_number_integer()) {
    throw std::invalid_argument("options: " + where.substr(0, where.size() - 1) +
                                " must be an integer, got " + given.dump());
  } else if (like.is_number_unsigned() && given.is_number_integer() &&
             !given.is_number_unsigned() && given.get<int64_t>() < 0) {
    throw std::invalid_argument("options: " + where.substr(0, where.size() - 1) +
                                " must not be negative, got " + given.dump());
  }
}

} // namespace

TrainOptions train_options_from_json(const nlohmann::json& json) {
  require_integers_where_expected(json, nlohmann::json(TrainOptions{}), "");
  auto j = json;
  // Runs written before the margin options were nested kept them flat.
  if (!j.contains("margin") && j.contains("margin_m_plus")) {
    j["margin"] = {{"m_plus", j["margin_m_plus"]},
                   {"m_minus", j.value("margin_m_minus", 0.1)},
                   {"lambda", j.value("margin_lambda", 0.5)},
                   {"squared", j.value("margin_squared", true)}};
  }
  // Runs written before the model registry named their network "model_kind".
  if (!j.contains("model_name") && j.contains("model_kind")) j["model_name"] = j["model_kind"];
  auto options = j.get<TrainOptions>();
  validate(options);
  return options;
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const auto cores = std::thread::hardware_concurrency();
  return cores > 0 ? static_cast<int>(cores) : 1;
}

} // namespace capsnet
