#include "capsnet/registry/flops.h"

#include <cmath>

namespace capsnet {

ModelFlops model_flops(const CapsNetConfig& c) {
  ModelFlops f;
  const double conv1_side = static_cast<double>(c.image_size - c.conv1_kernel + 1);
  const double grid = static_cast<double>(c.primary_grid());
  const double n_in = static_cast<double>(c.num_primary_capsules());
  const double j = static_cast<double>(c.num_classes), m = static_cast<double>(c.digit_dim);
  f.conv1 = 2 * conv1_side * conv1_side * c.conv1_channels * c.conv1_kernel * c.conv1_kernel *
            c.in_channels;
  f.primary = 2 * grid * grid * (c.primary_types * c.primary_dim) * c.conv1_channels *
              c.primary_kernel * c.primary_kernel;
  f.prediction = 2 * n_in * j * c.primary_dim * m;
  // r weighted sums s_j and r - 1 agreement updates, each N_in * N_out * D_out multiply-adds.
  f.routing = 2 * n_in * j * m * (2 * c.routing_iterations - 1);
  double width = j * m;
  for (auto hidden : c.decoder_hidden) {
    f.decoder += 2 * width * hidden;
    width = static_cast<double>(hidden);
  }
  f.decoder += 2 * width * c.in_channels * c.image_size * c.image_size;
  f.first_layer = f.conv1;
  return f;
}

namespace {

double decoder_flops(double width, const std::vector<int64_t>& hidden, double pixels) {
  double flops = 0;
  for (auto h : hidden) {
    flops += 2 * width * h;
    width = static_cast<double>(h);
  }
  return flops + 2 * width * pixels;
}

} // namespace

ModelFlops model_flops(const EfficientCapsNetConfig& c) {
  ModelFlops f;
  double side = static_cast<double>(c.image_size), channels = static_cast<double>(c.in_channels);
  for (size_t k = 0; k < c.stem_channels.size(); ++k) {
    side = std::floor((side - c.stem_kernels[k]) / c.stem_strides[k]) + 1;
    const double layer = 2 * side * side * c.stem_channels[k] * c.stem_kernels[k] *
                         c.stem_kernels[k] * channels;
    if (k == 0) f.first_layer = layer;
    f.conv1 += layer;
    channels = static_cast<double>(c.stem_channels[k]);
  }
  f.primary = 2 * channels * side * side;
  const double n_in = static_cast<double>(c.num_primary_capsules());
  const double k = static_cast<double>(c.num_classes), d = static_cast<double>(c.capsule_dim);
  f.prediction = 2 * n_in * k * c.primary_dim * d;
  f.routing = 3 * 2 * n_in * k * d;
  f.decoder = decoder_flops(k * d, c.decoder_hidden,
                            static_cast<double>(c.in_channels * c.image_size * c.image_size));
  return f;
}

} // namespace capsnet
