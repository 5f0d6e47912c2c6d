#include "capsnet/data/affine.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace capsnet {

namespace {

// A = R * Shear * scale, in (x, y) = (column, row) coordinates.
std::array<double, 4> linear_part(const AffineParams& p) {
  const double t = p.rotation_degrees * M_PI / 180, c = std::cos(t), s = std::sin(t);
  // R [[c, -s], [s, c]] times [[1, shear], [0, 1]], times scale.
  return {p.scale * c, p.scale * (c * p.shear - s), p.scale * s, p.scale * (s * p.shear + c)};
}

} // namespace

FramedSource::FramedSource(Dataset base, FramedOptions options)
    : base_(std::move(base)), options_(options) {
  const int64_t side = base_.images.size(2);
  TORCH_CHECK(options_.frame >= side, "a frame of ", options_.frame, " cannot hold ", side,
              "-pixel digits");
  const auto& r = options_.ranges;
  TORCH_CHECK(r.rotation_degrees >= 0 && r.shear >= 0 && r.min_scale > 0 &&
                  r.max_scale >= r.min_scale,
              "affine ranges must be non-negative with 0 < min_scale <= max_scale");
  // Each digit's ink box: where its non-zero pixels are.
  const auto ink = base_.images.to(at::kCPU).select(1, 0).gt(0);
  const auto rows = ink.any(2), cols = ink.any(1); // [N, side]
  const auto positions = at::arange(side, at::kLong);
  auto first = [&](const at::Tensor& any) {
    return at::where(any, positions, side).amin(1);
  };
  auto last = [&](const at::Tensor& any) { return at::where(any, positions, -1).amax(1); };
  ink_box_ = at::stack({first(rows), last(rows), first(cols), last(cols)}, 1).contiguous();
}

AffineParams FramedSource::params(int64_t index, std::mt19937_64* rng) const {
  TORCH_CHECK(index >= 0 && index < size(), "example ", index, " is outside [0, ", size(), ")");
  std::mt19937_64 fixed = example_stream(options_.seed, index);
  std::mt19937_64& draw = rng ? *rng : fixed;
  const int64_t side = base_.images.size(2), frame = options_.frame;
  AffineParams p;
  const auto* box = ink_box_.data_ptr<int64_t>() + 4 * index;
  // The digit centred in the frame; offsets of its ink box from the frame's centre.
  const double centre = (frame - 1) / 2.0, offset = (frame - side) / 2;
  double y0 = box[0] + offset - centre, y1 = box[1] + offset - centre;
  double x0 = box[2] + offset - centre, x1 = box[3] + offset - centre;
  if (box[1] < box[0]) y0 = y1 = x0 = x1 = 0; // a blank image
  if (!options_.affine) { // the whole digit image stays inside
    y0 = x0 = offset - centre;
    y1 = x1 = offset + side - 1 - centre;
  } else {
    const auto& r = options_.ranges;
    p.rotation_degrees = std::uniform_real_distribution<double>(-r.rotation_degrees,
                                                                r.rotation_degrees)(draw);
    p.shear = std::uniform_real_distribution<double>(-r.shear, r.shear)(draw);
    p.scale = std::uniform_real_distribution<double>(r.min_scale, r.max_scale)(draw);
    // Where the ink box's corners go.
    const auto a = linear_part(p);
    double lo_y = 1e9, hi_y = -1e9, lo_x = 1e9, hi_x = -1e9;
    for (double y : {y0 - 0.5, y1 + 0.5}) {
      for (double x : {x0 - 0.5, x1 + 0.5}) {
        const double tx = a[0] * x + a[1] * y, ty = a[2] * x + a[3] * y;
        lo_x = std::min(lo_x, tx), hi_x = std::max(hi_x, tx);
        lo_y = std::min(lo_y, ty), hi_y = std::max(hi_y, ty);
      }
    }
    y0 = lo_y + 0.5, y1 = hi_y - 0.5, x0 = lo_x + 0.5, x1 = hi_x - 0.5;
  }
  // Whole-pixel translations that keep the ink inside the frame: the digit's
  // whole image when only translated; when transformed, its ink box with a
  // pixel to spare (bilinear sampling spreads ink up to a pixel further).
  const double limit = options_.affine ? centre - 1 : centre;
  auto translation = [&](double lo, double hi) {
    const auto low = static_cast<int64_t>(std::ceil(-limit - lo - 1e-9));
    const auto high = static_cast<int64_t>(std::floor(limit - hi + 1e-9));
    if (high < low) return int64_t{0}; // larger than the frame: stays centred
    return std::uniform_int_distribution<int64_t>(low, high)(draw);
  };
  p.ty = translation(y0, y1);
  p.tx = translation(x0, x1);
  return p;
}

at::Tensor frame_and_transform(const at::Tensor& digits, const std::vector<AffineParams>& params,
                               int64_t frame) {
  TORCH_CHECK(digits.dim() == 4 && digits.size(2) == digits.size(3),
              "expected square digits [B, C, S, S], got ", digits.sizes());
  const int64_t batch = digits.size(0), side = digits.size(2), pad = (frame - side) / 2;
  TORCH_CHECK(static_cast<int64_t>(params.size()) == batch, "expected one transformation per image");
  auto framed = at::constant_pad_nd(digits, {pad, frame - side - pad, pad, frame - side - pad});
  // grid_sample's theta maps output to input positions, in coordinates of
  // [-1, 1] over the frame: input = A^-1 (output - t).
  auto theta = at::zeros({batch, 2, 3}, at::kDouble);
  auto t = theta.accessor<double, 3>();
  for (int64_t b = 0; b < batch; ++b) {
    const auto a = linear_part(params[b]);
    const double det = a[0] * a[3] - a[1] * a[2];
    const double i00 = a[3] / det, i01 = -a[1] / det, i10 = -a[2] / det, i11 = a[0] / det;
    const double tx = 2.0 * params[b].tx / frame, ty = 2.0 * params[b].ty / frame;
    t[b][0][0] = i00, t[b][0][1] = i01, t[b][0][2] = -(i00 * tx + i01 * ty);
    t[b][1][0] = i10, t[b][1][1] = i11, t[b][1][2] = -(i10 * tx + i11 * ty);
  }
  const auto grid = at::affine_grid_generator(theta.to(framed.options()), framed.sizes(),
                                              /*align_corners=*/false);
  return at::grid_sampler(framed, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false);
}

Batch FramedSource::get(const at::Tensor& indices, std::mt19937_64* rng) const {
  const auto index = indices.to(at::kCPU, at::kLong).contiguous();
  std::vector<AffineParams> params;
  for (int64_t k = 0; k < index.numel(); ++k) {
    params.push_back(this->params(index.data_ptr<int64_t>()[k], rng));
  }
  const auto device = base_.images.device();
  const auto digits =
      base_.images.index_select(0, index.to(device)).to(at::kFloat).div_(255.0);
  Batch batch;
  if (options_.affine) {
    batch.images = frame_and_transform(digits, params, options_.frame).clamp_(0, 1);
  } else { // whole-pixel moves: exact
    const int64_t side = digits.size(2), frame = options_.frame, pad = (frame - side) / 2;
    std::vector<int64_t> dy, dx;
    for (const auto& p : params) dy.push_back(p.ty), dx.push_back(p.tx);
    batch.images = shift_images(
        at::constant_pad_nd(digits, {pad, frame - side - pad, pad, frame - side - pad}), dy, dx);
  }
  batch.labels = base_.labels.index_select(0, index.to(device));
  batch.targets = multi_hot(batch.labels, base_.num_classes);
  batch.recon_targets = batch.images;
  return batch;
}

} // namespace capsnet
