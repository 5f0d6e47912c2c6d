#include "capsnet/data/digit_augment.h"

#include "capsnet/data/dataset.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace capsnet {

namespace {

// OpenCV's getRotationMatrix2D about (S/2, S/2) applied by warpAffine: each
// output pixel reads the input at the inverse map, bilinearly, 0 outside.
void rotate(float* plane, int64_t S, int degrees) {
  const double a = std::cos(degrees * M_PI / 180), b = std::sin(degrees * M_PI / 180);
  const double c = S / 2.0;
  std::vector<float> in(plane, plane + S * S);
  for (int64_t y = 0; y < S; ++y) {
    for (int64_t x = 0; x < S; ++x) {
      const double dx = x - c, dy = y - c;
      const double sx = a * dx - b * dy + c, sy = b * dx + a * dy + c;
      const auto x0 = static_cast<int64_t>(std::floor(sx)), y0 = static_cast<int64_t>(std::floor(sy));
      const double fx = sx - x0, fy = sy - y0;
      auto at = [&](int64_t yy, int64_t xx) -> double {
        return yy >= 0 && yy < S && xx >= 0 && xx < S ? in[yy * S + xx] : 0.0;
      };
      plane[y * S + x] = static_cast<float>(
          (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) +
          fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)));
    }
  }
}

// Shrinks each row from S to S - w columns by area averaging, placed at
// column `offset` of a black row.
void squish(float* plane, int64_t S, int64_t w, int64_t offset) {
  const int64_t narrow = S - w;
  const double scale = static_cast<double>(S) / narrow;
  std::vector<float> row(S);
  for (int64_t y = 0; y < S; ++y) {
    std::copy(plane + y * S, plane + (y + 1) * S, row.begin());
    std::fill(plane + y * S, plane + (y + 1) * S, 0.0f);
    for (int64_t j = 0; j < narrow && offset + j < S; ++j) {
      const double begin = j * scale, end = (j + 1) * scale;
      double sum = 0;
      for (auto i = static_cast<int64_t>(begin); i < S && i < end; ++i) {
        sum += row[i] * (std::min<double>(end, i + 1) - std::max<double>(begin, i));
      }
      plane[y * S + offset + j] = static_cast<float>(sum / scale);
    }
  }
}

} // namespace

DigitAugmentDraw augment_digit(at::Tensor& image, std::mt19937_64& rng) {
  TORCH_CHECK(image.dim() == 3 && image.size(1) == image.size(2) && image.size(1) >= 10 &&
                  image.scalar_type() == at::kFloat && image.is_contiguous() &&
                  image.device().is_cpu(),
              "expected a contiguous float CPU image [C, S, S] with S >= 10, got ", image.sizes());
  const int64_t C = image.size(0), S = image.size(1);
  std::normal_distribution<double> normal(0, 0.33);
  std::uniform_real_distribution<double> uniform(0, 1);
  auto clipped = [&](double a) { return std::min(std::abs(a), 0.9999); };
  float* data = image.data_ptr<float>();
  DigitAugmentDraw d;

  const double r0 = std::clamp(normal(rng), -0.9999, 0.9999), r1 = normal(rng);
  d.angle_degrees = static_cast<int>(r0 * 30);
  d.rotated = r1 <= 0;
  if (d.rotated) {
    for (int64_t c = 0; c < C; ++c) rotate(data + c * S * S, S, d.angle_degrees);
  }

  // The ink's margins, over all channels.
  const auto ink = image.sum(0);
  const auto col_ink = ink.sum(0).contiguous(), row_ink = ink.sum(1).contiguous();
  const bool up = uniform(rng) < 0.5, left = uniform(rng) < 0.5;
  const double ay = clipped(normal(rng)), ax = clipped(normal(rng));
  // The first and last inked column and row, read in place (no .item()).
  auto inked = [S](const at::Tensor& sums, int64_t& first, int64_t& last) {
    const float* v = sums.data_ptr<float>();
    first = S;
    last = -1;
    for (int64_t i = 0; i < S; ++i) {
      if (v[i] > 0) {
        if (last < 0) first = i;
        last = i;
      }
    }
    return last >= 0;
  };
  int64_t first_col, last_col, first_row, last_row;
  if (inked(col_ink, first_col, last_col) && inked(row_ink, first_row, last_row)) {
    d.shift_x = static_cast<int64_t>(left ? std::floor(-ax * first_col)
                                          : std::floor(ax * (S - last_col)));
    d.shift_y = static_cast<int64_t>(up ? std::floor(-ay * first_row)
                                        : std::floor(ay * (S - last_row)));
    image.copy_(image.roll({d.shift_y, d.shift_x}, {1, 2}));
  }

  const double w = clipped(normal(rng)), o = clipped(normal(rng));
  d.squish = static_cast<int64_t>(std::floor(w * (S / 4))) + 1;
  d.squish_offset = d.squish / 2 + static_cast<int64_t>(std::floor(o * 2));
  for (int64_t c = 0; c < C; ++c) squish(data + c * S * S, S, d.squish, d.squish_offset);

  d.erase_row = static_cast<int64_t>(std::floor(uniform(rng) * (S - 9))) + 4;
  d.erase_col = static_cast<int64_t>(std::floor(uniform(rng) * (S - 9))) + 4;
  image.narrow(1, d.erase_row, 4).narrow(2, d.erase_col, 4).zero_();
  return d;
}

at::Tensor augment_digits(const at::Tensor& images, std::mt19937_64& rng) {
  TORCH_CHECK(images.dim() == 4, "expected images [B, C, S, S], got ", images.sizes());
  auto out = on_device(images, at::kCPU).to(at::kFloat).contiguous().clone();
  for (int64_t b = 0; b < out.size(0); ++b) {
    auto image = out[b];
    augment_digit(image, rng);
  }
  return on_device(out, images.device());
}

} // namespace capsnet
