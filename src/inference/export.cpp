#include "capsnet/inference/export.h"

#include "capsnet/data/dataset.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/registry/models.h"
#include "capsnet/io/atomic_file.h"

#include <nlohmann/json.hpp>
#include <torch/serialize.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace capsnet {

namespace fs = std::filesystem;

std::vector<std::pair<std::string, at::Tensor>> seed_state_dict(CapsNet& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model->named_parameters()) {
    std::string name = item.key();
    const std::string primary = "primary_capsules.conv.";
    if (name.rfind(primary, 0) == 0) name = "conv2." + name.substr(primary.size());
    auto value = item.value().detach().clone().contiguous();
    // The seed's u_hat = W u has no input scale: fold it into W (the same function).
    if (name == "digit_capsules.weight") value.mul_(model->config.routing_input_scale);
    out.emplace_back(name, value);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> export_state_dict(torch::nn::Module& model) {
  if (auto* capsnet = dynamic_cast<CapsNetImpl*>(&model)) {
    CapsNet holder(std::dynamic_pointer_cast<CapsNetImpl>(capsnet->shared_from_this()));
    return seed_state_dict(holder);
  }
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model.named_parameters()) {
    out.emplace_back(item.key(), item.value().detach().clone().contiguous());
  }
  for (const auto& item : model.named_buffers()) {
    out.emplace_back(item.key(), item.value().detach().clone().contiguous());
  }
  return out;
}

nlohmann::json export_config(const TrainOptions& options, const DataShape& shape) {
  const auto& entry = model_info(options.model_name);
  entry.require(Capability::kExport, "export");
  auto model = entry.config(options);
  const auto classes = model.value("num_classes", shape.classes);
  std::vector<std::string> names;
  for (int64_t k = 0; k < classes; ++k) names.push_back(shape.class_name(k));
  const auto channels = static_cast<size_t>(model.value("in_channels", shape.channels));
  // export_state_dict folds the scale into digit_capsules.weight.
  if (model.contains("routing_input_scale")) model["routing_input_scale"] = 1.0;
  return {{"format", "capsnet-pytorch-export-v1"},
          {"model_name", options.model_name},
          {"model", model},
          {"dataset", options.dataset},
          {"normalize", options.normalize},
          {"mnist_mean", kMnistMean},
          {"mnist_std", kMnistStd},
          {"channel_mean", shape.mean.empty() ? std::vector<double>(channels, kMnistMean) : shape.mean},
          {"channel_std", shape.std.empty() ? std::vector<double>(channels, kMnistStd) : shape.std},
          {"class_names", names},
          {"preparation", shape.preparation},
          {"resize", shape.resize},
          {"note", "input: float [B, C, H, W] in [0, 1], standardised per channel with "
                   "channel_mean/std when normalize (mnist_mean/std: the same for digit models); "
                   "routing softmax over 'parents' is dim 2 of the [B, N_in, N_out] logits, over "
                   "'children' dim 1"}};
}

std::string export_pytorch(torch::nn::Module& model, const TrainOptions& options,
                           const std::string& path, const DataShape& shape) {
  const fs::path config_path = fs::path(path).replace_extension(".json");
  if (config_path == fs::path(path)) {
    throw std::invalid_argument(path + ": the weights file needs another extension than .json "
                                       "(the configuration goes to " + config_path.string() + ")");
  }
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : export_state_dict(model)) dict.insert(name, tensor);
  const auto bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomically(path, std::string_view(bytes.data(), bytes.size()));
  write_file_atomically(config_path.string(), export_config(options, shape).dump(2) + "\n");
  return config_path.string();
}

std::vector<std::pair<std::string, at::Tensor>> read_pytorch_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto value = torch::pickle_load(bytes);
  if (!value.isGenericDict()) throw std::runtime_error(path + ": not a dict of tensors");
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& entry : value.toGenericDict()) {
    out.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
  }
  return out;
}

std::string export_checkpoint(const std::string& checkpoint, const std::string& out) {
  // The weights and the .json beside them (export_pytorch refuses a .json `out`).
  check_not_an_input(out, {checkpoint});
  check_not_an_input(fs::path(out).replace_extension(".json").string(), {checkpoint});
  auto loaded = load_checkpoint(checkpoint);
  loaded.require(Capability::kExport, "capsnet export");
  auto& model = loaded.module();
  const auto config_path = export_pytorch(model, loaded.options, out, loaded.shape);
  const auto params = export_state_dict(model);
  std::ostringstream text;
  text << "wrote " << out << " (" << params.size() << " tensors) and " << config_path << "\n";
  for (const auto& [name, tensor] : params) {
    char padded[64];
    std::snprintf(padded, sizeof padded, "  %-24s [", name.c_str());
    text << padded;
    for (int64_t d = 0; d < tensor.dim(); ++d) text << (d ? ", " : "") << tensor.size(d);
    text << "]\n";
  }
  return text.str();
}

} // namespace capsnet
