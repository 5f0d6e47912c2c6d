#include "capsnet/model/capsnet.h"

#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace capsnet {

namespace {

void require_positive(int64_t value, const char* field) {
  if (value < 1) {
    throw std::invalid_argument(std::string("model config: ") + field +
                                " must be at least 1, got " + std::to_string(value));
  }
}

} // namespace

int64_t CapsNetConfig::primary_grid() const {
  const int64_t conv1_out = image_size - conv1_kernel + 1;
  return (conv1_out - primary_kernel) / primary_stride + 1;
}

int64_t CapsNetConfig::num_primary_capsules() const {
  return primary_types * primary_grid() * primary_grid();
}

void CapsNetConfig::validate() const {
  require_positive(image_size, "image_size");
  require_positive(in_channels, "in_channels");
  require_positive(num_classes, "num_classes");
  require_positive(conv1_channels, "conv1_channels");
  require_positive(conv1_kernel, "conv1_kernel");
  require_positive(primary_types, "primary_types");
  require_positive(primary_dim, "primary_dim");
  require_positive(primary_kernel, "primary_kernel");
  require_positive(primary_stride, "primary_stride");
  require_positive(digit_dim, "digit_dim");
  require_positive(routing_iterations, "routing_iterations");
  for (auto width : decoder_hidden) require_positive(width, "decoder_hidden");
  if (!(w_init_std > 0)) {
    throw std::invalid_argument("model config: w_init_std must be positive, got " +
                                std::to_string(w_init_std));
  }
  // Bounds a checkpoint's stored architecture before anything is allocated.
  auto require_at_most = [](int64_t value, int64_t limit, const char* field) {
    if (value > limit) {
      throw std::invalid_argument(std::string("model config: ") + field + " must be at most " +
                                  std::to_string(limit) + ", got " + std::to_string(value));
    }
  };
  require_at_most(image_size, 1024, "image_size");
  require_at_most(in_channels, 64, "in_channels");
  require_at_most(num_classes, 1000, "num_classes");
  require_at_most(conv1_channels, 4096, "conv1_channels");
  require_at_most(conv1_kernel, image_size, "conv1_kernel");
  require_at_most(primary_types, 1024, "primary_types");
  require_at_most(primary_dim, 256, "primary_dim");
  require_at_most(primary_kernel, image_size, "primary_kernel");
  require_at_most(primary_stride, image_size, "primary_stride");
  require_at_most(digit_dim, 256, "digit_dim");
  require_at_most(routing_iterations, 100, "routing_iterations");
  require_at_most(static_cast<int64_t>(decoder_hidden.size()), 16, "the number of decoder layers");
  for (auto width : decoder_hidden) require_at_most(width, 65536, "decoder_hidden");
  if (!(routing_input_scale > 0 && routing_input_scale <= 1)) {
    throw std::invalid_argument("model config: routing_input_scale must be in (0, 1], got " +
                                std::to_string(routing_input_scale));
  }
  if (!(w_init_std <= 100)) {
    throw std::invalid_argument("model config: w_init_std must be at most 100, got " +
                                std::to_string(w_init_std));
  }
  if (image_size - conv1_kernel + 1 < primary_kernel) {
    throw std::invalid_argument("model config: image_size " + std::to_string(image_size) +
                                " is too small for conv1_kernel " + std::to_string(conv1_kernel) +
                                " followed by primary_kernel " + std::to_string(primary_kernel));
  }
  // Parameters in all, in doubles so that no product overflows: at most 2^31.
  double params = double(in_channels) * conv1_channels * conv1_kernel * conv1_kernel +
                  double(conv1_channels) * primary_types * primary_dim * primary_kernel *
                      primary_kernel +
                  double(num_primary_capsules()) * num_classes * primary_dim * digit_dim;
  double width = double(num_classes) * digit_dim;
  for (auto hidden : decoder_hidden) params += width * hidden, width = double(hidden);
  params += width * in_channels * image_size * image_size;
  if (params > double(int64_t(1) << 31)) {
    throw std::invalid_argument("model config: " + std::to_string(params) +
                                " parameters; at most 2^31 are accepted");
  }
}

bool CapsNetConfig::operator==(const CapsNetConfig& o) const {
  return nlohmann::json(*this) == nlohmann::json(o);
}

CapsNetImpl::CapsNetImpl(const CapsNetConfig& config_) : config(config_) {
  config.validate();
  conv1 = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.in_channels, config.conv1_channels,
                                                          config.conv1_kernel)));
  primary_capsules = register_module(
      "primary_capsules",
      PrimaryCapsules(PrimaryCapsulesOptions(config.conv1_channels, config.primary_types,
                                             config.primary_dim)
                          .kernel_size(config.primary_kernel)
                          .stride(config.primary_stride)));
  digit_capsules = register_module(
      "digit_capsules",
      DigitCapsules(DigitCapsulesOptions(config.num_primary_capsules(), config.num_classes,
                                         config.primary_dim, config.digit_dim)
                        .routing_iterations(config.routing_iterations)
                        .softmax(config.routing_softmax)
                        .bias(config.digit_bias)
                        .init_std(config.w_init_std)
                        .input_scale(config.routing_input_scale)));
  decoder = register_module(
      "decoder", Decoder(DecoderOptions(config.num_classes, config.digit_dim,
                                        {config.in_channels, config.image_size, config.image_size})
                             .hidden(config.decoder_hidden)));
}

at::Tensor CapsNetImpl::primary(const at::Tensor& images) {
  check_images(images);
  // conv1 runs as the primary capsules' convolution does, in its precision
  // (in fp32, oneDNN's weight gradient was its slowest part on AVX2: 139 ms
  // of a step, 15 GFLOP/s).
  const auto& caps = primary_capsules->options;
  auto features = torch::relu(conv2d_in(caps.precision(), images, conv1->weight, conv1->bias,
                                        /*stride=*/1, caps.conv_algo()));
  stage("conv1", features);
  auto u = primary_capsules->forward(features);
  stage("primary_capsules", u);
  return u;
}

at::Tensor CapsNetImpl::capsules(const at::Tensor& images) {
  auto digits = digit_capsules->forward(primary(images));
  stage("digit_capsules", digits);
  return digits;
}

CapsuleNetworkImpl::Calibration CapsNetImpl::calibrate(const at::Tensor& images) {
  at::NoGradGuard no_grad;
  const auto u = primary(images); // [B, N_in, D_in]
  Calibration c;
  c.drive = u.abs().sum({1, 2}).mean().item<double>() / static_cast<double>(config.num_classes);
  if (c.drive > kMaxDrive) {
    // Three significant digits: every rank of a data-parallel run, whatever
    // its CPU's rounding, records the same architecture.
    const double exact = kTargetDrive / c.drive;
    const double unit = std::pow(10.0, std::floor(std::log10(exact)) - 2);
    c.scale = std::round(exact / unit) * unit;
  }
  config.routing_input_scale = c.scale;
  digit_capsules->options.input_scale(c.scale);
  return c;
}

at::Tensor CapsNetImpl::reconstruct(const at::Tensor& capsules, const at::Tensor& classes) {
  return decoder->forward(capsules, classes);
}

} // namespace capsnet
