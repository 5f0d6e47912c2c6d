#include "capsnet/engine/inference.h"

#include "capsnet/engine/checkpoint.h"

#include <torch/csrc/autograd/grad_mode.h>

namespace capsnet {

Predictor Predictor::load(const std::string& checkpoint, const std::string& what,
                          const std::vector<Capability>& needs) {
  auto loaded = load_checkpoint(checkpoint);
  for (const auto capability : needs) loaded.require(capability, what);
  return Predictor(loaded.capsnet(what), loaded.options);
}

Predictor::Predictor(CapsNet model, TrainOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  model_->eval();
}

void Predictor::to(const c10::Device& device) {
  device_ = device;
  model_->to(device);
}

Classification Predictor::classify(const at::Tensor& images) const {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == model_->config.in_channels &&
                  images.size(2) == model_->config.image_size &&
                  images.size(3) == model_->config.image_size,
              "expected images of shape [B, ", model_->config.in_channels, ", ",
              model_->config.image_size, ", ", model_->config.image_size, "], got ",
              images.sizes());
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    auto x = images.narrow(0, start, std::min(batch_size, images.size(0) - start))
                 .to(device_, at::kFloat);
    if (options_.normalize) x = standardize(x);
    parts.push_back(model_->capsules(x).cpu());
  }
  Classification out;
  out.capsules = parts.empty() ? at::empty({0, model_->config.num_classes,
                                            model_->config.digit_dim})
                               : at::cat(parts);
  out.lengths = out.capsules.norm(2, -1);
  out.predictions = out.lengths.argmax(-1);
  return out;
}

at::Tensor Predictor::reconstruct(const at::Tensor& capsules, const at::Tensor& classes) const {
  torch::NoGradGuard no_grad;
  return model_->reconstruct(capsules.to(device_), classes.to(device_)).cpu();
}

at::Tensor to_unit_float(const at::Tensor& images) { return images.to(at::kFloat).div(255.0); }

} // namespace capsnet
