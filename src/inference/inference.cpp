#include "capsnet/inference/inference.h"

#include "capsnet/engine/checkpoint.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/image/image.h"

#include "capsnet/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <filesystem>

#include <torch/csrc/autograd/grad_mode.h>

namespace capsnet {

Predictor Predictor::load(const std::string& checkpoint, const std::string& what,
                          const std::vector<Capability>& needs) {
  auto loaded = load_checkpoint(checkpoint);
  for (const auto capability : needs) loaded.require(capability, what);
  return Predictor(loaded.capsule_network(what), loaded.options, loaded.shape);
}

Predictor::Predictor(CapsuleNetworkPtr model, TrainOptions options, DataShape shape)
    : model_(std::move(model)), options_(std::move(options)), shape_(std::move(shape)) {
  model_->eval();
}

at::Tensor Predictor::prepare_picture(const std::string& bytes, const std::string& name) const {
  const auto sizes = model_->shape();
  const auto side = sizes.image_size;
  if (shape_.preparation == Preparation::kDigit) {
    if (sizes.in_channels != 1) {
      throw ImageError(name + ": the model takes " + std::to_string(sizes.in_channels) +
                       "-channel digit images; this program prepares grey ones only");
    }
    return prepare_digit_image(decode_image(bytes, name), side);
  }
  const auto stored = shape_.resize > 0 ? shape_.resize : side;
  auto picture =
      resize_and_crop(decode_picture(bytes, name, static_cast<int>(sizes.in_channels)),
                      static_cast<int>(stored));
  picture = centre_crop(picture, static_cast<int>(side));
  return picture_tensor(picture).unsqueeze(0).to(at::kFloat).div_(255.0);
}

void Predictor::to(const c10::Device& device) {
  device_ = device;
  model_->to(device);
}

Classification Predictor::classify(const at::Tensor& images) const {
  const auto sizes = model_->shape();
  TORCH_CHECK(images.dim() == 4 && images.size(1) == sizes.in_channels &&
                  images.size(2) == sizes.image_size && images.size(3) == sizes.image_size,
              "expected images of shape [B, ", sizes.in_channels, ", ", sizes.image_size, ", ",
              sizes.image_size, "], got ", images.sizes());
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    auto x = images.narrow(0, start, std::min(batch_size, images.size(0) - start))
                 .to(device_, at::kFloat);
    if (options_.normalize) x = standardize(x, shape_.mean, shape_.std);
    parts.push_back(model_->capsules(x).cpu());
  }
  Classification out;
  out.capsules =
      parts.empty() ? at::empty({0, sizes.num_classes, sizes.capsule_dim}) : at::cat(parts);
  out.lengths = out.capsules.norm(2, -1);
  out.predictions = out.lengths.argmax(-1);
  return out;
}

at::Tensor Predictor::reconstruct(const at::Tensor& capsules, const at::Tensor& classes) const {
  torch::NoGradGuard no_grad;
  return model_->reconstruct(capsules.to(device_), classes.to(device_)).cpu();
}

at::Tensor Predictor::coupling(const at::Tensor& images) const {
  torch::NoGradGuard no_grad;
  auto x = images.to(device_, at::kFloat);
  if (options_.normalize) x = standardize(x, shape_.mean, shape_.std);
  const auto c = model_->coupling(x);
  return c.defined() ? c.cpu() : c;
}

at::Tensor to_unit_float(const at::Tensor& images) { return images.to(at::kFloat).div(255.0); }

std::vector<NamedImage> read_prediction_inputs(const std::string& path,
                                               const Predictor& predictor) {
  if (!looks_like_idx(path)) return {{path, predictor.prepare_picture(read_image_bytes(path), path)}};
  const auto side = predictor.sizes().image_size;
  if (predictor.sizes().in_channels != 1) {
    throw DataError(path + ": an IDX file holds grey images, and the model takes " +
                    std::to_string(predictor.sizes().in_channels) + " channels");
  }
  auto array = read_idx(path, 3);
  if (array.dims[1] != side || array.dims[2] != side) {
    throw DataError(path + ": IDX images are " + std::to_string(array.dims[1]) + "x" +
                    std::to_string(array.dims[2]) + ", the model takes " + std::to_string(side) +
                    "x" + std::to_string(side));
  }
  if (array.dims[0] == 0) throw DataError(path + ": the IDX file holds no images");
  std::vector<NamedImage> out;
  const auto all = at::from_blob(array.data.data(), {array.dims[0], 1, side, side}, at::kByte);
  for (int64_t k = 0; k < array.dims[0]; ++k) {
    out.push_back({path + "[" + std::to_string(k) + "]", to_unit_float(all[k]).unsqueeze(0)});
  }
  return out;
}

nlohmann::json prediction_json(const std::string& name, const Classification& result, int64_t k,
                               const Predictor& predictor) {
  const int64_t predicted = result.predictions[k].item<int64_t>();
  const auto lengths = result.lengths[k].contiguous();
  std::vector<double> values(lengths.data_ptr<float>(), lengths.data_ptr<float>() + lengths.numel());
  return {{"file", name},
          {"prediction", predicted},
          {"class_name", predictor.class_name(predicted)},
          {"lengths", values}};
}

namespace {

// A file name as a file system takes it anywhere: letters, digits, - and _.
std::string safe_name(const std::string& name) {
  std::string out;
  for (char c : std::filesystem::path(name).filename().string()) {
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  }
  return out;
}

} // namespace

int predict_files(const Predictor& predictor, const std::vector<std::string>& files,
                  const std::string& save_dir, const std::vector<std::string>& inputs_read,
                  const std::function<void(const nlohmann::json& row)>& on_row) {
  if (!save_dir.empty()) std::filesystem::create_directories(save_dir);
  int failures = 0;
  size_t rows = 0;
  for (const auto& file : files) {
    std::vector<NamedImage> inputs;
    try {
      inputs = read_prediction_inputs(file, predictor);
    } catch (const std::exception& e) { // ImageError, DataError: report and go on
      ++failures;
      std::string message = e.what();
      if (message.rfind(file, 0) != 0) message = file + ": " + message;
      on_row({{"file", file}, {"error", message}});
      ++rows;
      continue;
    }
    std::vector<at::Tensor> images;
    for (const auto& input : inputs) images.push_back(input.image);
    const auto out = predictor.classify(at::cat(images));
    for (size_t k = 0; k < inputs.size(); ++k, ++rows) {
      auto row = prediction_json(inputs[k].name, out, int64_t(k), predictor);
      if (!save_dir.empty()) {
        const auto path = (std::filesystem::path(save_dir) /
                           (std::to_string(rows) + "-" + safe_name(inputs[k].name) + ".png"))
                              .string();
        check_not_an_input(path, inputs_read);
        write_png(path, tensor_picture(inputs[k].image[0]));
        row["preprocessed"] = path;
      }
      on_row(row);
    }
  }
  return failures;
}

std::string prediction_text(const nlohmann::json& row, const Predictor& predictor) {
  const auto file = row["file"].get<std::string>();
  if (row.contains("error")) return row["error"].get<std::string>() + "\n";
  const auto& lengths = row["lengths"];
  const int64_t predicted = row["prediction"];
  char number[32];
  std::snprintf(number, sizeof number, "%.3f", lengths[predicted].get<double>());
  std::string text = file + ": " + predictor.class_name(predicted) + " (length " + number +
                     ")\n  lengths:";
  for (size_t j = 0; j < lengths.size(); ++j) {
    std::snprintf(number, sizeof number, "%.3f", lengths[j].get<double>());
    text += " " + predictor.class_name(int64_t(j)) + ":" + number;
  }
  return text + "\n";
}

} // namespace capsnet
