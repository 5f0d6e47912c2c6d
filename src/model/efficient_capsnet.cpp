#include "capsnet/model/efficient_capsnet.h"

#include "capsnet/ops/attention_routing.h"
#include "capsnet/ops/cpu_features.h"
#include "capsnet/ops/dynamic_routing.h"

#include <torch/csrc/autograd/generated/variable_factories.h>
#include <torch/nn/init.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace capsnet {

namespace {

void require_config(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("efficient-capsnet config: " + message);
}

// Keras's truncated normal initialisers (he_normal, glorot_normal): N(0, std)
// redrawn outside two standard deviations, the std corrected for the cut.
void truncated_normal_(at::Tensor& tensor, double fan) {
  const double std = std::sqrt(2.0 / fan) / 0.87962566103423978;
  at::NoGradGuard no_grad;
  tensor.normal_(0, std);
  for (auto outside = tensor.abs() > 2 * std; outside.any().item<bool>();
       outside = tensor.abs() > 2 * std) {
    tensor.masked_scatter_(outside, at::empty_like(tensor).normal_(0, std).masked_select(outside));
  }
}

} // namespace

int64_t EfficientCapsNetConfig::stem_grid() const {
  int64_t side = image_size;
  for (size_t k = 0; k < stem_channels.size(); ++k) {
    side = (side - stem_kernels[k]) / stem_strides[k] + 1;
  }
  return side;
}

int64_t EfficientCapsNetConfig::num_primary_capsules() const {
  return stem_channels.back() / primary_dim;
}

int64_t EfficientCapsNetConfig::parameter_count() const {
  int64_t count = 0, channels = in_channels;
  for (size_t k = 0; k < stem_channels.size(); ++k) {
    count += stem_kernels[k] * stem_kernels[k] * channels * stem_channels[k] + stem_channels[k];
    count += 2 * stem_channels[k]; // batch norm's scale and shift
    channels = stem_channels[k];
  }
  count += stem_grid() * stem_grid() * channels + channels; // depthwise kernel and bias
  const int64_t n_in = num_primary_capsules();
  return count + n_in * num_classes * primary_dim * capsule_dim + n_in * num_classes;
}

void EfficientCapsNetConfig::validate() const {
  require_config(image_size >= 1 && image_size <= 1024, "image_size must be in [1, 1024], got " +
                                                     std::to_string(image_size));
  require_config(in_channels >= 1 && in_channels <= 64,
          "in_channels must be in [1, 64], got " + std::to_string(in_channels));
  require_config(num_classes >= 2 && num_classes <= 1000,
          "num_classes must be in [2, 1000], got " + std::to_string(num_classes));
  require_config(!stem_channels.empty() && stem_channels.size() <= 16 &&
              stem_kernels.size() == stem_channels.size() &&
              stem_strides.size() == stem_channels.size(),
          "stem_channels, stem_kernels and stem_strides must list 1 to 16 layers each");
  int64_t side = image_size;
  for (size_t k = 0; k < stem_channels.size(); ++k) {
    require_config(stem_channels[k] >= 1 && stem_channels[k] <= 4096 && stem_strides[k] >= 1 &&
                stem_strides[k] <= 8 && stem_kernels[k] >= 1,
            "stem layer " + std::to_string(k + 1) + " has a size out of range");
    require_config(stem_kernels[k] <= side, "the images (" + std::to_string(image_size) +
                                         " pixels) are too small for the stem: layer " +
                                         std::to_string(k + 1) + "'s kernel is " +
                                         std::to_string(stem_kernels[k]) + " wide but its input " +
                                         std::to_string(side));
    side = (side - stem_kernels[k]) / stem_strides[k] + 1;
  }
  require_config(primary_dim >= 1 && stem_channels.back() % primary_dim == 0,
          "primary_dim (" + std::to_string(primary_dim) + ") must divide the stem's last width (" +
              std::to_string(stem_channels.back()) + ")");
  require_config(capsule_dim >= 1 && capsule_dim <= 256,
          "capsule_dim must be in [1, 256], got " + std::to_string(capsule_dim));
  for (auto width : decoder_hidden) {
    require_config(width >= 1 && width <= 65536, "decoder widths must be in [1, 65536]");
  }
  require_config(bn_momentum > 0 && bn_momentum <= 1 && bn_eps > 0, "bn_momentum must be in (0, 1] "
                                                             "and bn_eps positive");
}

bool EfficientCapsNetConfig::operator==(const EfficientCapsNetConfig& o) const {
  return nlohmann::json(*this) == nlohmann::json(o);
}

EfficientCapsNetImpl::EfficientCapsNetImpl(const EfficientCapsNetConfig& config_)
    : config(config_) {
  config.validate();
  int64_t channels = config.in_channels;
  for (size_t k = 0; k < config.stem_channels.size(); ++k) {
    const auto name = std::to_string(k + 1);
    auto conv = register_module(
        "conv" + name,
        torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, config.stem_channels[k],
                                                   config.stem_kernels[k])
                              .stride(config.stem_strides[k])));
    const double fan_in = static_cast<double>(conv->weight[0].numel());
    truncated_normal_(conv->weight, fan_in); // he_normal
    torch::nn::init::zeros_(conv->bias);
    convs.push_back(conv);
    norms.push_back(register_module(
        "bn" + name, BatchNorm(config.stem_channels[k], config.bn_momentum, config.bn_eps)));
    channels = config.stem_channels[k];
  }
  const int64_t grid = config.stem_grid();
  primary_capsules = register_module(
      "primary_capsules",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, grid).groups(channels)));
  { // Keras's glorot_uniform for a (K, K, 1, F) kernel
    const double limit = std::sqrt(6.0 / (grid * grid * (1.0 + channels)));
    torch::nn::init::uniform_(primary_capsules->weight, -limit, limit);
    torch::nn::init::zeros_(primary_capsules->bias);
  }
  const int64_t n_in = config.num_primary_capsules(), K = config.num_classes;
  weight = register_parameter("routing_weight",
                              torch::empty({n_in, K, config.primary_dim, config.capsule_dim}));
  // he_normal of the authors' W [K, N_in, D_in, D]: Keras's fan-in is D_in * K * N_in.
  truncated_normal_(weight, static_cast<double>(config.primary_dim * K * n_in));
  routing_bias = register_parameter("routing_bias", torch::zeros({n_in, K}));
  decoder = register_module(
      "decoder",
      Decoder(DecoderOptions(K, config.capsule_dim,
                             {config.in_channels, config.image_size, config.image_size})
                  .hidden(config.decoder_hidden)));
  for (size_t k = 0; k < decoder->layers.size(); ++k) {
    auto& layer = decoder->layers[k];
    const bool last = k + 1 == decoder->layers.size();
    const double fan_in = static_cast<double>(layer->weight.size(1));
    // he_normal, then glorot_normal for the sigmoid layer
    truncated_normal_(layer->weight, last ? fan_in + layer->weight.size(0) : fan_in);
    torch::nn::init::zeros_(layer->bias);
  }
}

namespace {

// A stem convolution in bf16: LibTorch's own (oneDNN's on a CPU with bf16,
// cuDNN's on a GPU), 1.16x fp32's training speed at batch 16 on a Xeon with
// AMX where conv2d_bf16's im2col was 0.69x, with a bf16 output (channels
// last); elsewhere (oneDNN has no bf16 convolution below AVX512-BF16)
// conv2d_in's exact widening to fp32, with an fp32 output.
at::Tensor stem_bf16(torch::nn::Conv2dImpl& conv, const at::Tensor& x, int64_t stride) {
  if (x.device().is_cpu() && !cpu_bf16_support().available) {
    return conv2d_in(Precision::kBf16, x, conv.weight, conv.bias, stride, ConvAlgo::kAuto);
  }
  // Channels last, the layout oneDNN's bf16 kernels compute in: planar
  // tensors cost a reorder each way in every call, forward and backward.
  return at::conv2d(x.to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast),
                    conv.weight.to(at::kBFloat16), conv.bias.to(at::kBFloat16), stride);
}

} // namespace

at::Tensor EfficientCapsNetImpl::primary(const at::Tensor& images) {
  check_images(images);
  auto x = images;
  for (size_t k = 0; k < convs.size(); ++k) {
    // fp32 stays LibTorch's own convolution (what every checkpoint so far was trained with).
    const auto y = precision_ == Precision::kFp32 ? convs[k]->forward(x)
                                                  : stem_bf16(*convs[k], x, config.stem_strides[k]);
    // A bf16 convolution's output goes on in bf16 to the next one.
    x = norms[k]->forward_relu(y, k + 1 < convs.size() ? y.scalar_type() : at::kFloat);
  }
  stage("conv1", x);
  // The depthwise kernel covers the whole grid, so each output is a channel's
  // dot product with its kernel: a product and a sum, where LibTorch's
  // depthwise convolution took about three times as long (docs/efficient-capsnet.md).
  const auto& dw = *primary_capsules;
  x = (x.flatten(2) * dw.weight.flatten(1)).sum(-1) + dw.bias; // [B, F]
  const auto out = efficient_squash(
      x.reshape({x.size(0), config.num_primary_capsules(), config.primary_dim}));
  stage("primary_capsules", out);
  return out;
}

at::Tensor EfficientCapsNetImpl::routed(const at::Tensor& images, at::Tensor* coupling) {
  const auto u = primary(images);
  const auto v = attention_routing(prediction_vectors(u, weight), routing_bias, coupling);
  stage("digit_capsules", v);
  return v;
}

at::Tensor EfficientCapsNetImpl::capsules(const at::Tensor& images) {
  return routed(images, nullptr);
}

at::Tensor EfficientCapsNetImpl::coupling(const at::Tensor& images) {
  at::Tensor c;
  routed(images, &c);
  return c;
}

at::Tensor EfficientCapsNetImpl::reconstruct(const at::Tensor& capsules,
                                             const at::Tensor& classes) {
  return decoder->forward(capsules, classes);
}

} // namespace capsnet
