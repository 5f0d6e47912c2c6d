#include "capsnet/model/baseline_cnn.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace capsnet {

int64_t BaselineCnnConfig::feature_side() const {
  int64_t side = image_size;
  for (size_t k = 0; k < conv_channels.size(); ++k) {
    if (std::find(pool_after.begin(), pool_after.end(), static_cast<int64_t>(k)) !=
        pool_after.end()) {
      side /= 2;
    }
  }
  return side;
}

int64_t BaselineCnnConfig::parameter_count() const {
  int64_t count = 0, channels = in_channels;
  for (const auto c : conv_channels) {
    count += c * channels * kernel * kernel + c;
    channels = c;
  }
  int64_t width = channels * feature_side() * feature_side();
  for (const auto h : hidden) {
    count += width * h + h;
    width = h;
  }
  return count + width * num_classes + num_classes;
}

void BaselineCnnConfig::validate() const {
  auto positive = [](int64_t v, const std::string& name) {
    if (v <= 0 || v > (1 << 20)) {
      throw std::invalid_argument("baseline CNN: " + name + " must be in [1, 2^20], got " +
                                  std::to_string(v));
    }
  };
  positive(image_size, "image_size");
  if (image_size > 1024) throw std::invalid_argument("baseline CNN: image_size must be at most 1024");
  positive(in_channels, "in_channels");
  positive(num_classes, "num_classes");
  positive(kernel, "kernel");
  if (kernel % 2 == 0) throw std::invalid_argument("baseline CNN: kernel must be odd (same padding)");
  if (conv_channels.empty()) throw std::invalid_argument("baseline CNN: needs a convolution");
  for (const auto c : conv_channels) positive(c, "conv_channels");
  for (const auto h : hidden) positive(h, "hidden");
  for (const auto p : pool_after) {
    if (p < 0 || p >= static_cast<int64_t>(conv_channels.size())) {
      throw std::invalid_argument("baseline CNN: pool_after names no convolution: " +
                                  std::to_string(p));
    }
  }
  if (feature_side() < 1) throw std::invalid_argument("baseline CNN: pooled away the whole image");
  // In doubles: the count must not overflow to pass.
  double count = 0, channels = in_channels, side = feature_side();
  for (const auto c : conv_channels) count += c * (channels * kernel * kernel + 1), channels = c;
  double width = channels * side * side;
  for (const auto h : hidden) count += h * (width + 1), width = h;
  count += num_classes * (width + 1);
  if (count > 2147483648.0) {
    throw std::invalid_argument("baseline CNN: more than 2^31 parameters");
  }
  if (!(dropout >= 0 && dropout < 1)) {
    throw std::invalid_argument("baseline CNN: dropout must be in [0, 1)");
  }
}

BaselineCnnImpl::BaselineCnnImpl(BaselineCnnConfig config_) : config(std::move(config_)) {
  config.validate();
  int64_t channels = config.in_channels;
  for (size_t k = 0; k < config.conv_channels.size(); ++k) {
    convs.push_back(register_module(
        "conv" + std::to_string(k + 1),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, config.conv_channels[k], config.kernel)
                              .padding(config.kernel / 2))));
    channels = config.conv_channels[k];
  }
  int64_t width = channels * config.feature_side() * config.feature_side();
  for (size_t k = 0; k <= config.hidden.size(); ++k) {
    const int64_t out = k < config.hidden.size() ? config.hidden[k] : config.num_classes;
    fcs.push_back(register_module("fc" + std::to_string(k + 1), torch::nn::Linear(width, out)));
    width = out;
  }
  dropout = register_module("dropout", torch::nn::Dropout(config.dropout));
}

at::Tensor BaselineCnnImpl::forward(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == config.in_channels &&
                  images.size(2) == config.image_size && images.size(3) == config.image_size,
              "expected images [B, ", config.in_channels, ", ", config.image_size, ", ",
              config.image_size, "], got ", images.sizes());
  auto x = images;
  for (size_t k = 0; k < convs.size(); ++k) {
    x = at::relu(convs[k]->forward(x));
    if (std::find(config.pool_after.begin(), config.pool_after.end(), static_cast<int64_t>(k)) !=
        config.pool_after.end()) {
      x = at::max_pool2d(x, {2, 2});
    }
  }
  x = x.flatten(1);
  for (size_t k = 0; k + 1 < fcs.size(); ++k) x = at::relu(fcs[k]->forward(x));
  return fcs.back()->forward(dropout->forward(x));
}

} // namespace capsnet
