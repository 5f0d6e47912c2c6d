#include "capsnet/registry/models.h"

#include "capsnet/data/folder.h"

#include <algorithm>
#include <stdexcept>

namespace capsnet {

DataShape data_shape(const DatasetInfo& info, const Dataset& train, int64_t crop) {
  DataShape shape;
  // Generated data sets make images of their own size from the files'.
  shape.image_size = info.source ? info.image_size : train.side();
  shape.channels = info.source ? info.channels : train.channels();
  shape.classes = train.num_classes;
  shape.labels_per_image = info.labels_per_image;
  shape.class_names = train.class_names;
  if (train.folder) {
    shape.preparation = Preparation::kResize;
    shape.resize = train.folder->side;
    if (crop > 0) shape.image_size = crop;
    shape.mean = train.folder->mean;
    shape.std = train.folder->std;
    shape.test_files = train.folder->test_files;
  }
  return shape;
}

DataRequest data_request(const TrainOptions& options, Split split, const std::string& dir,
                         const DataShape* trained) {
  DataRequest request;
  request.dir = !dir.empty() ? dir : options.data_dir;
  request.split = split;
  request.limit = split == Split::kTrain ? options.limit : options.test_limit;
  request.folder = options.folder;
  request.seed = options.seed;
  if (trained && trained->preparation == Preparation::kResize) {
    request.folder.image_size = trained->resize;
    request.folder.channels = trained->channels;
    if (request.dir == options.data_dir) request.test_files = trained->test_files;
  }
  return request;
}

SourceOptions source_options(const TrainOptions& options, const DataShape& shape) {
  SourceOptions source;
  source.shift = options.shift;
  source.normalize = options.normalize;
  source.mean = shape.mean;
  source.std = shape.std;
  source.augment = options.folder.augment;
  source.digit_augment = options.digit_augment;
  if (shape.preparation == Preparation::kResize && shape.resize > shape.image_size) {
    source.crop = shape.image_size;
  }
  return source;
}

std::string DataShape::class_name(int64_t k) const {
  return k >= 0 && k < static_cast<int64_t>(class_names.size()) ? class_names[k]
                                                                : std::to_string(k);
}

namespace {

// The architecture's input and output against the data's.
void check_sizes(const std::string& model, int64_t image_size, int64_t channels, int64_t classes,
                 const DataShape& shape) {
  if (image_size != shape.image_size) {
    throw TrainingError("the data set's images are " + std::to_string(shape.image_size) +
                        " pixels wide but the " + model + " expects " +
                        std::to_string(image_size));
  }
  if (channels != shape.channels) {
    throw TrainingError("the data set's images have " + std::to_string(shape.channels) +
                        " channels but the " + model + " expects " + std::to_string(channels));
  }
  if (classes != shape.classes) {
    throw TrainingError("the data set has " + std::to_string(shape.classes) +
                        " classes but the " + model + " has " + std::to_string(classes));
  }
}

// A built-in model's configuration is its own field of TrainOptions
// (`member`): config and set_config read and write it, fit takes the data's
// image size, channels and classes into it, and build makes a `Net` of it
// after checking those sizes against the data's (`what` names the network).
template <class Net, class Config>
void built_in_config(ModelInfo& info, Config TrainOptions::*member, const std::string& what) {
  info.build = [member, what](const DataShape& shape, const TrainOptions& options) -> ModulePtr {
    const auto& c = options.*member;
    check_sizes(what, c.image_size, c.in_channels, c.num_classes, shape);
    return Net(c).ptr();
  };
  info.config = [member](const TrainOptions& options) { return nlohmann::json(options.*member); };
  info.set_config = [member](TrainOptions& options, const nlohmann::json& config) {
    options.*member = config.get<Config>();
  };
  info.fit = [member](TrainOptions& options, const DataShape& shape) {
    auto& config = options.*member;
    config.image_size = shape.image_size;
    config.in_channels = shape.channels;
    config.num_classes = shape.classes;
  };
}

ModelInfo capsnet_entry() {
  ModelInfo info;
  info.name = "capsnet";
  info.description = "the paper's CapsNet: conv, primary capsules, digit capsules with dynamic "
                     "routing, decoder; margin and reconstruction losses";
  info.capabilities = {Capability::kCapsules, Capability::kDecoder, Capability::kExport,
                       Capability::kBf16, Capability::kConvAlgo};
  built_in_config<CapsNet>(info, &TrainOptions::model, "model");
  info.flops = [](const TrainOptions& options) { return model_flops(options.model); };
  info.bench_options = [] { return TrainOptions{}; };
  info.task = [](const ModulePtr& module, const TrainOptions& options) -> std::unique_ptr<Task> {
    return std::make_unique<CapsNetTask>(CapsNet(std::dynamic_pointer_cast<CapsNetImpl>(module)),
                                         options);
  };
  info.summary = [](const TrainOptions& options) {
    return "preset " + options.preset + ", " + enum_name(options.routing) + " routing";
  };
  info.calibrate = [](torch::nn::Module& network, TrainOptions& options, const at::Tensor& images) {
    auto& net = dynamic_cast<CapsNetImpl&>(network);
    const auto c = net.calibrate(images);
    options.model.routing_input_scale = net.config.routing_input_scale;
    if (c.scale == 1.0) return std::string();
    std::ostringstream line;
    line << "calibrated the start: the primary capsules' drive on the first batch is " << c.drive
         << ", above " << CapsuleNetworkImpl::kMaxDrive << " (where the class capsules saturate "
         << "in a few steps), so the routing's input is scaled by " << c.scale << " to "
         << CapsuleNetworkImpl::kTargetDrive
         << " (recorded as model.routing_input_scale; --calibrate-init false keeps 1)";
    return line.str();
  };
  return info;
}

ModelInfo efficient_capsnet_entry() {
  ModelInfo info;
  info.name = "efficient-capsnet";
  info.description = "Efficient-CapsNet (Mazzia et al. 2021): a 4-layer conv stem, depthwise "
                     "primary capsules, self-attention routing, decoder; 161K parameters";
  info.capabilities = {Capability::kCapsules, Capability::kDecoder, Capability::kExport,
                       Capability::kBf16};
  built_in_config<EfficientCapsNet>(info, &TrainOptions::efficient, "Efficient-CapsNet");
  info.flops = [](const TrainOptions& options) { return model_flops(options.efficient); };
  info.bench_options = [] { return preset_options("efficient-capsnet"); };
  info.task = [](const ModulePtr& module, const TrainOptions& options) -> std::unique_ptr<Task> {
    return std::make_unique<CapsNetTask>(std::dynamic_pointer_cast<EfficientCapsNetImpl>(module),
                                         options);
  };
  info.summary = [](const TrainOptions& options) {
    return "preset " + options.preset + ", Efficient-CapsNet (" +
           std::to_string(options.efficient.parameter_count()) + " parameters)";
  };
  info.validate = [](const TrainOptions& options) { options.efficient.validate(); };
  return info;
}

ModelInfo baseline_entry() {
  ModelInfo info;
  info.name = "baseline-cnn";
  info.description = "Table 1's baseline CNN: three 5x5 convolutions of 256, 256, 128, FC 328 "
                     "and 192, dropout; cross-entropy";
  built_in_config<BaselineCnn>(info, &TrainOptions::baseline, "baseline CNN");
  info.task = [](const ModulePtr& module, const TrainOptions&) -> std::unique_ptr<Task> {
    return std::make_unique<BaselineCnnTask>(
        BaselineCnn(std::dynamic_pointer_cast<BaselineCnnImpl>(module)));
  };
  info.summary = [](const TrainOptions& options) {
    return "baseline CNN (" + std::to_string(options.baseline.parameter_count()) + " parameters)";
  };
  info.validate = [](const TrainOptions& options) { options.baseline.validate(); };
  return info;
}

std::deque<ModelInfo>& models() {
  static std::deque<ModelInfo> entries = {capsnet_entry(), efficient_capsnet_entry(),
                                          baseline_entry()};
  return entries;
}

std::string known_names() {
  const auto names = model_names();
  std::string out;
  for (size_t k = 0; k < names.size(); ++k) {
    out += (k == 0 ? "" : k + 1 == names.size() ? " or " : ", ") + names[k];
  }
  return out;
}

} // namespace

TrainOptions fitted_to(const TrainOptions& options, const DataShape& shape) {
  auto fitted = options;
  const auto& entry = model_info(options.model_name);
  if (entry.fit) entry.fit(fitted, shape);
  validate(fitted);
  return fitted;
}

TrainOptions with_model_config(const TrainOptions& options, const nlohmann::json& patch) {
  const auto& entry = model_info(options.model_name);
  if (!patch.is_object()) {
    throw std::invalid_argument("--model-config: expected a JSON object of the model's fields, "
                                "such as {\"routing_iterations\": 1}; got " + patch.dump());
  }
  if (!entry.config || !entry.set_config) {
    throw std::invalid_argument("--model-config: model '" + entry.name +
                                "' has no configuration of its own");
  }
  auto merged = entry.config(options);
  for (const auto& [field, value] : patch.items()) {
    if (merged.contains(field)) continue;
    std::string fields;
    for (const auto& [known, unused] : merged.items()) fields += (fields.empty() ? "" : ", ") + known;
    throw std::invalid_argument("--model-config: model '" + entry.name + "' has no field '" +
                                field + "'; its fields are " + fields);
  }
  merged.merge_patch(patch);
  auto out = options;
  try {
    entry.set_config(out, merged);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument("--model-config " + patch.dump() + ": " + e.what());
  }
  return out;
}

nlohmann::json parse_model_config(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument("--model-config: not JSON (" + std::string(e.what()) + "): " +
                                text);
  }
}

bool ModelInfo::offers(Capability capability) const {
  return std::find(capabilities.begin(), capabilities.end(), capability) != capabilities.end();
}

void ModelInfo::require(Capability capability, const std::string& what) const {
  if (offers(capability)) return;
  const auto others = models_offering(capability);
  throw std::invalid_argument(what + " needs " + enum_name(capability) + ", which model '" +
                              name + "' does not offer; use a checkpoint of " +
                              (others.empty() ? "a model that does" : others));
}

const std::deque<ModelInfo>& registered_models() { return models(); }

std::string models_offering(Capability capability) {
  std::string names;
  for (const auto& model : models()) {
    if (model.offers(capability)) names += (names.empty() ? "" : ", ") + model.name;
  }
  return names;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& info : models()) names.push_back(info.name);
  return names;
}

std::vector<std::string> bench_models() {
  std::vector<std::string> names;
  for (const auto& info : models()) {
    if (info.bench_options) names.push_back(info.name);
  }
  return names;
}

const ModelInfo& model_info(const std::string& name) {
  for (const auto& info : models()) {
    if (info.name == name) return info;
  }
  throw std::invalid_argument("'" + name + "' is not a known model; expected " + known_names());
}

void register_model(ModelInfo info) {
  if (info.name.empty() || !info.build || !info.task || !info.summary) {
    throw std::invalid_argument("register_model: a model needs a name, build, task and summary");
  }
  for (const auto& known : models()) {
    if (known.name == info.name) {
      throw std::invalid_argument("register_model: a model called '" + info.name +
                                  "' is already registered");
    }
  }
  models().push_back(std::move(info));
}

} // namespace capsnet
