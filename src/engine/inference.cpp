#include "capsnet/engine/inference.h"

#include "capsnet/engine/checkpoint.h"
#include "capsnet/viz/image.h"

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

} // namespace capsnet
