#include "capsnet/engine/flops.h"

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
  return f;
}

} // namespace capsnet
