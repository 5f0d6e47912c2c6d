#include "capsnet/engine/checkpoint.h"

#include "capsnet/data/registry.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/version.h"

#include <nlohmann/json.hpp>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <filesystem>
#include <map>

namespace capsnet {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "capsnet-checkpoint-v1";

// Tensors are mapped to `device` (checkpoints written on a GPU load anywhere).
torch::serialize::InputArchive open_archive(const std::string& path,
                                            c10::Device device = c10::Device(c10::kCPU)) {
  if (!fs::exists(path)) {
    throw CheckpointError(path + ": checkpoint not found (train writes RUN_DIR/last.pt and "
                                 "RUN_DIR/best.pt)");
  }
  if (!fs::is_regular_file(path)) {
    throw CheckpointError(path + ": not a regular file (a directory, device or pipe); pass a "
                                 "checkpoint file");
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device);
  } catch (const c10::Error&) {
    throw CheckpointError(path + ": not a readable checkpoint (corrupt or truncated file?); use "
                                 "another checkpoint, e.g. the run's best.pt or last.pt");
  }
  c10::IValue format;
  if (!archive.try_read("format", format) || !format.isString() ||
      format.toStringRef() != kFormat) {
    throw CheckpointError(path + ": not a capsnet checkpoint (no '" + std::string(kFormat) +
                          "' marker); pass a file written by capsnet train");
  }
  return archive;
}

int64_t read_int(torch::serialize::InputArchive& archive, const std::string& path,
                 const std::string& key) {
  c10::IValue value;
  if (!archive.try_read(key, value) || !value.isInt()) {
    throw CheckpointError(path + ": checkpoint lacks '" + key + "'; the file is damaged");
  }
  return value.toInt();
}

double read_double(torch::serialize::InputArchive& archive, const std::string& path,
                   const std::string& key) {
  c10::IValue value;
  if (!archive.try_read(key, value) || !value.isDouble()) {
    throw CheckpointError(path + ": checkpoint lacks '" + key + "'; the file is damaged");
  }
  return value.toDouble();
}

// A field that checkpoints of older versions lack: `fallback` then.
double read_double_or(torch::serialize::InputArchive& archive, const std::string& key,
                      double fallback) {
  c10::IValue value;
  if (!archive.try_read(key, value)) return fallback;
  if (value.isDouble()) return value.toDouble();
  return value.isInt() ? static_cast<double>(value.toInt()) : fallback;
}

} // namespace

void save_checkpoint(const std::string& path, CapsNet& model, torch::optim::Optimizer* optimizer,
                     const TrainOptions& options, const TrainingState& state) {
  const auto& c = model->config;
  DataShape shape;
  shape.image_size = c.image_size;
  shape.channels = c.in_channels;
  shape.classes = c.num_classes;
  save_checkpoint(path, *model, optimizer, options, shape, state);
}

void LoadedCheckpoint::require(Capability capability, const std::string& what) const {
  try {
    info->require(capability, what);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(e.what());
  }
}

CapsNet LoadedCheckpoint::capsnet(const std::string& what) const {
  require(Capability::kCapsules, what);
  auto model = std::dynamic_pointer_cast<CapsNetImpl>(network);
  if (!model) {
    throw CheckpointError(what + ": model '" + info->name + "' offers capsules but is not a "
                                 "CapsNet, which " + what + " reads");
  }
  return CapsNet(model);
}

CapsuleNetworkPtr LoadedCheckpoint::capsule_network(const std::string& what) const {
  require(Capability::kCapsules, what);
  auto model = std::dynamic_pointer_cast<CapsuleNetworkImpl>(network);
  if (!model) {
    throw CheckpointError(what + ": model '" + info->name + "' offers capsules but is not a "
                                 "capsule network");
  }
  return model;
}

void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     torch::optim::Optimizer* optimizer, const TrainOptions& options,
                     const DataShape& shape, const TrainingState& state) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("written_by", c10::IValue(std::string("capsnet ") + version() + " (" +
                                          build_commit() + ")"));
  archive.write("options", c10::IValue(nlohmann::json(options).dump()));
  archive.write("data_shape", c10::IValue(nlohmann::json(shape).dump()));
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  archive.write("has_optimizer", c10::IValue(optimizer != nullptr));
  if (optimizer) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  archive.write("epoch", c10::IValue(state.epoch));
  archive.write("step_in_epoch", c10::IValue(state.step_in_epoch));
  archive.write("global_step", c10::IValue(state.global_step));
  archive.write("best_accuracy", c10::IValue(state.best_accuracy));
  archive.write("best_epoch", c10::IValue(state.best_epoch));
  archive.write("best_test_accuracy", c10::IValue(state.best_test_accuracy));
  archive.write("epoch_loss_sum", c10::IValue(state.epoch_loss_sum));
  archive.write("epoch_correct", c10::IValue(state.epoch_correct));
  archive.write("epoch_seen", c10::IValue(state.epoch_seen));
  archive.write("epoch_seconds", c10::IValue(state.epoch_seconds));
  archive.write("data", c10::IValue(state.data));
  write_file_atomically(path, [&](const std::string& temporary) { archive.save_to(temporary); });
}

namespace {

// What checkpoints written before the shape was recorded were built for: their
// architecture's own sizes, from the model's configuration.
DataShape recorded_shape(const TrainOptions& options, const ModelInfo& model) {
  DataShape shape;
  if (model.config) {
    const auto config = model.config(options);
    shape.image_size = config.value("image_size", shape.image_size);
    shape.channels = config.value("in_channels", shape.channels);
    shape.classes = config.value("num_classes", shape.classes);
  }
  for (const auto& info : registered_datasets()) {
    if (info.name == options.dataset) shape.labels_per_image = info.labels_per_image;
  }
  return shape;
}

// The network the checkpoint records, through its model's registry entry.
void build_network(torch::serialize::InputArchive& archive, const std::string& path,
                   LoadedCheckpoint& loaded) {
  try {
    loaded.info = &model_info(loaded.options.model_name);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(path + ": " + e.what() + " (the checkpoint names a model this program "
                                 "does not register)");
  }
  c10::IValue shape;
  try {
    loaded.shape = archive.try_read("data_shape", shape) && shape.isString()
                       ? nlohmann::json::parse(shape.toStringRef()).get<DataShape>()
                       : recorded_shape(loaded.options, *loaded.info);
    loaded.network = loaded.info->build(loaded.shape, loaded.options);
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": the checkpoint's model and data shape disagree (" + e.what() +
                          "); the file is damaged");
  }
}

} // namespace

LoadedCheckpoint load_checkpoint(const std::string& path) {
  auto archive = open_archive(path);
  LoadedCheckpoint loaded;
  c10::IValue options;
  if (!archive.try_read("options", options) || !options.isString()) {
    throw CheckpointError(path + ": checkpoint lacks its options; the file is damaged");
  }
  try {
    loaded.options = train_options_from_json(nlohmann::json::parse(options.toStringRef()));
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": checkpoint options are unreadable (" + e.what() +
                          "); it was written by an incompatible capsnet version");
  }
  build_network(archive, path, loaded);
  auto& module = loaded.module();
  std::map<std::string, std::vector<int64_t>> expected;
  for (const auto& item : module.named_parameters()) {
    expected[item.key()] = item.value().sizes().vec();
  }
  torch::serialize::InputArchive model_archive;
  try {
    if (!archive.try_read("model", model_archive)) throw CheckpointError("no model");
    module.load(model_archive);
  } catch (const std::exception&) {
    throw CheckpointError(path + ": model tensors are missing or unreadable for the architecture "
                                 "the checkpoint records; the file is damaged");
  }
  for (const auto& item : module.named_parameters()) {
    if (item.value().sizes().vec() != expected[item.key()]) {
      throw CheckpointError(path + ": parameter " + item.key() + " has shape " +
                            c10::str(item.value().sizes()) + " but the recorded architecture " +
                            "needs " + c10::str(c10::IntArrayRef(expected[item.key()])) +
                            "; the file is inconsistent");
    }
  }
  auto& s = loaded.state;
  s.epoch = read_int(archive, path, "epoch");
  s.step_in_epoch = read_int(archive, path, "step_in_epoch");
  s.global_step = read_int(archive, path, "global_step");
  s.best_accuracy = read_double(archive, path, "best_accuracy");
  s.best_epoch = static_cast<int64_t>(read_double_or(archive, "best_epoch", 0));
  s.best_test_accuracy = read_double_or(archive, "best_test_accuracy", -1);
  s.epoch_loss_sum = read_double(archive, path, "epoch_loss_sum");
  s.epoch_correct = read_int(archive, path, "epoch_correct");
  s.epoch_seen = read_int(archive, path, "epoch_seen");
  s.epoch_seconds = read_double(archive, path, "epoch_seconds");
  c10::IValue data;
  if (archive.try_read("data", data) && data.isString()) s.data = data.toStringRef();
  c10::IValue written_by;
  if (archive.try_read("written_by", written_by) && written_by.isString()) {
    loaded.written_by = written_by.toStringRef();
  }
  return loaded;
}

void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer) {
  // The state goes where the parameters are.
  const auto& params = optimizer.param_groups().front().params();
  auto archive = open_archive(path, params.empty() ? c10::Device(c10::kCPU) : params.front().device());
  torch::serialize::InputArchive optimizer_archive;
  try {
    if (!archive.try_read("optimizer", optimizer_archive)) {
      throw CheckpointError(path + ": checkpoint holds no optimizer state; it cannot be resumed");
    }
    optimizer.load(optimizer_archive);
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError(path + ": optimizer state is unreadable (" + e.what() + ")");
  }
}

} // namespace capsnet
