#include "winograd_kernel.h"

#include "isa_dispatch.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace capsnet::cpu {

bool winograd_covers(int64_t height, int64_t width, int64_t kernel, int64_t stride) {
  const WinogradShape s{1, height, width};
  return kernel == 9 && stride == 2 && height % 2 == 0 && width % 2 == 0 &&
         s.out_height() >= 2 && s.out_width() >= 2 && s.out_height() % 2 == 0 &&
         s.out_width() % 2 == 0;
}

namespace {

// Images handled together, one per SIMD lane.
constexpr int64_t kLanes = 16;
using Lanes = float[kLanes];

// The transforms of F(2x2, 5x5) at the points 0, 1, -1, 2, -2, infinity, one
// dimension at a time, on kLanes images at once: r[k] = sum_j T[k][j] d[j]
// with d[j] at d + j * ds and r[k] at r + k * rs.
//   B^T (6 x 6)   rows  4 0 -5 0 1 0 | 0 -4 -4 1 1 0 | 0 4 -4 -1 1 0 |
//                       0 -2 -1 2 1 0 | 0 2 -1 -2 1 0 | 0 4 0 -5 0 1
//   A^T (2 x 6)   rows  1 1 1 1 1 0 | 0 1 -1 2 -2 1
//   G   (6 x 5)   in conv2d_winograd (LibTorch, on the weights)
CAPSNET_INLINE void apply_bt(const float* d, int64_t ds, float* r, int64_t rs) {
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) {
    const float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l],
                d4 = d[4 * ds + l], d5 = d[5 * ds + l];
    r[l] = 4 * d0 - 5 * d2 + d4;
    r[rs + l] = -4 * (d1 + d2) + d3 + d4;
    r[2 * rs + l] = 4 * (d1 - d2) - d3 + d4;
    r[3 * rs + l] = 2 * (d3 - d1) - d2 + d4;
    r[4 * rs + l] = 2 * (d1 - d3) - d2 + d4;
    r[5 * rs + l] = 4 * d1 - 5 * d3 + d5;
  }
}

// r = B d (the adjoint of apply_bt).
CAPSNET_INLINE void apply_b(const float* d, int64_t ds, float* r, int64_t rs) {
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) {
    const float v0 = d[l], v1 = d[ds + l], v2 = d[2 * ds + l], v3 = d[3 * ds + l],
                v4 = d[4 * ds + l], v5 = d[5 * ds + l];
    r[l] = 4 * v0;
    r[rs + l] = 4 * (v2 - v1 + v5) + 2 * (v4 - v3);
    r[2 * rs + l] = -5 * v0 - 4 * (v1 + v2) - v3 - v4;
    r[3 * rs + l] = v1 - v2 + 2 * (v3 - v4) - 5 * v5;
    r[4 * rs + l] = v0 + v1 + v2 + v3 + v4;
    r[5 * rs + l] = v5;
  }
}

CAPSNET_INLINE void apply_at(const float* m, int64_t ms, float* r, int64_t rs) {
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) {
    const float m0 = m[l], m1 = m[ms + l], m2 = m[2 * ms + l], m3 = m[3 * ms + l],
                m4 = m[4 * ms + l], m5 = m[5 * ms + l];
    r[l] = m0 + m1 + m2 + m3 + m4;
    r[rs + l] = m1 - m2 + 2 * (m3 - m4) + m5;
  }
}

// r = A y (the adjoint of apply_at).
CAPSNET_INLINE void apply_a(const float* y, int64_t ys, float* r, int64_t rs) {
#pragma omp simd
  for (int64_t l = 0; l < kLanes; ++l) {
    const float y0 = y[l], y1 = y[ys + l];
    r[l] = y0;
    r[rs + l] = y0 + y1;
    r[2 * rs + l] = y0 - y1;
    r[3 * rs + l] = y0 + 2 * y1;
    r[4 * rs + l] = y0 - 2 * y1;
    r[5 * rs + l] = y1;
  }
}

// dst[0, lanes) = src[0, lanes): two or one vector moves for a whole block
// (memcpy of a variable length became `rep movs`, half the input transform's time).
CAPSNET_INLINE void copy_lanes(float* dst, const float* src, int64_t lanes) {
  if (lanes == kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) dst[l] = src[l];
  } else {
    for (int64_t l = 0; l < lanes; ++l) dst[l] = src[l];
  }
}

// A tile's 36 vectors of kLanes images between the kernels' buffer
// (tile[k * kLanes + l]) and V or M, whose rows k are `stride` apart.
CAPSNET_INLINE void load_tile(float* tile, const float* from, int64_t stride, int64_t lanes) {
  for (int64_t k = 0; k < 36; ++k) copy_lanes(tile + k * kLanes, from + k * stride, lanes);
}

CAPSNET_INLINE void store_tile(float* to, int64_t stride, const float* tile, int64_t lanes) {
  for (int64_t k = 0; k < 36; ++k) copy_lanes(to + k * stride, tile + k * kLanes, lanes);
}

// The channel c and phase (p, q) of V's channel c4.
struct Phase {
  int64_t c, p, q;
  Phase(int64_t c4, int64_t channels)
      : c(c4 % channels), p(c4 / channels / 2), q(c4 / channels % 2) {}
};

// The kernels over V's channels visit them in the order (c, p, q): the four
// phases of an input channel one after the other, while its planes are in
// cache. `index` in [0, 4C) is that order's; the result is V's channel.
CAPSNET_INLINE int64_t phase_channel(int64_t index, int64_t channels) {
  return index % 4 * channels + index / 4;
}

CAPSNET_INLINE void input_impl(const WinogradShape& sh, const float* x, int64_t n,
                               int64_t c4_begin, int64_t c4_end, float* v) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, PH = sh.phase_height(),
                PW = sh.phase_width(), TW = sh.out_width() / 2, T = sh.tiles(),
                C4 = sh.phase_channels();
  std::vector<float> plane(PH * PW * kLanes);
  alignas(64) float rows[36 * kLanes], tile[36 * kLanes];
  for (int64_t index = c4_begin; index < c4_end; ++index) {
    const int64_t c4 = phase_channel(index, C);
    const Phase ph(c4, C);
    for (int64_t n0 = 0; n0 < n; n0 += kLanes) {
      const int64_t lanes = std::min(kLanes, n - n0);
      // The phase plane, image-minor: plane[(i * PW + j) * kLanes + l].
      for (int64_t l = 0; l < kLanes; ++l) {
        if (l >= lanes) {
          for (int64_t k = 0; k < PH * PW; ++k) plane[k * kLanes + l] = 0.0f;
          continue;
        }
        const float* image = x + ((n0 + l) * C + ph.c) * H * W + ph.p * W + ph.q;
        for (int64_t i = 0; i < PH; ++i) {
          for (int64_t j = 0; j < PW; ++j) {
            plane[(i * PW + j) * kLanes + l] = image[2 * i * W + 2 * j];
          }
        }
      }
      for (int64_t t = 0; t < T; ++t) {
        const float* d = plane.data() + (2 * (t / TW) * PW + 2 * (t % TW)) * kLanes;
        // rows[xi][b] = (B^T d)[xi][b], then tile[xi][nu] = (rows B)[xi][nu].
        for (int64_t b = 0; b < 6; ++b) {
          apply_bt(d + b * kLanes, PW * kLanes, rows + b * kLanes, 6 * kLanes);
        }
        for (int64_t xi = 0; xi < 6; ++xi) {
          apply_bt(rows + xi * 6 * kLanes, kLanes, tile + xi * 6 * kLanes, kLanes);
        }
        store_tile(v + c4 * T * n + t * n + n0, C4 * T * n, tile, lanes);
      }
    }
  }
}

CAPSNET_INLINE void input_adjoint_impl(const WinogradShape& sh, const float* grad_v, int64_t n,
                                       int64_t c4_begin, int64_t c4_end, float* grad_x) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, PH = sh.phase_height(),
                PW = sh.phase_width(), TW = sh.out_width() / 2, T = sh.tiles(),
                C4 = sh.phase_channels();
  std::vector<float> plane(PH * PW * kLanes);
  alignas(64) float tile[36 * kLanes], cols[36 * kLanes], grad_d[36 * kLanes];
  for (int64_t index = c4_begin; index < c4_end; ++index) {
    const int64_t c4 = phase_channel(index, C);
    const Phase ph(c4, C);
    for (int64_t n0 = 0; n0 < n; n0 += kLanes) {
      const int64_t lanes = std::min(kLanes, n - n0);
      std::fill(plane.begin(), plane.end(), 0.0f);
      std::fill(tile, tile + 36 * kLanes, 0.0f);
      for (int64_t t = 0; t < T; ++t) {
        load_tile(tile, grad_v + c4 * T * n + t * n + n0, C4 * T * n, lanes);
        // cols[xi][b] = (tile B^T)[xi][b], then grad_d[a][b] = (B cols)[a][b].
        for (int64_t xi = 0; xi < 6; ++xi) {
          apply_b(tile + xi * 6 * kLanes, kLanes, cols + xi * 6 * kLanes, kLanes);
        }
        for (int64_t b = 0; b < 6; ++b) {
          apply_b(cols + b * kLanes, 6 * kLanes, grad_d + b * kLanes, 6 * kLanes);
        }
        float* d = plane.data() + (2 * (t / TW) * PW + 2 * (t % TW)) * kLanes;
        for (int64_t a = 0; a < 6; ++a) {
          for (int64_t b = 0; b < 6; ++b) {
            float* to = d + (a * PW + b) * kLanes;
            const float* from = grad_d + (a * 6 + b) * kLanes;
#pragma omp simd
            for (int64_t l = 0; l < kLanes; ++l) to[l] += from[l];
          }
        }
      }
      for (int64_t l = 0; l < lanes; ++l) {
        float* image = grad_x + ((n0 + l) * C + ph.c) * H * W + ph.p * W + ph.q;
        for (int64_t i = 0; i < PH; ++i) {
          for (int64_t j = 0; j < PW; ++j) {
            image[2 * i * W + 2 * j] = plane[(i * PW + j) * kLanes + l];
          }
        }
      }
    }
  }
}

CAPSNET_INLINE void output_impl(const WinogradShape& sh, const float* m, int64_t n, int64_t O,
                                int64_t o_begin, int64_t o_end, const float* bias, float* y) {
  const int64_t OH = sh.out_height(), OW = sh.out_width(), TW = OW / 2, T = sh.tiles();
  alignas(64) float tile[36 * kLanes], cols[12 * kLanes], out[4 * kLanes];
  std::fill(tile, tile + 36 * kLanes, 0.0f);
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t n0 = 0; n0 < n; n0 += kLanes) {
      const int64_t lanes = std::min(kLanes, n - n0);
      for (int64_t t = 0; t < T; ++t) {
        load_tile(tile, m + o * T * n + t * n + n0, O * T * n, lanes);
        // cols[xi][j] = (tile A)[xi][j], then out[i][j] = (A^T cols)[i][j].
        for (int64_t xi = 0; xi < 6; ++xi) {
          apply_at(tile + xi * 6 * kLanes, kLanes, cols + xi * 2 * kLanes, kLanes);
        }
        for (int64_t j = 0; j < 2; ++j) {
          apply_at(cols + j * kLanes, 2 * kLanes, out + j * kLanes, 2 * kLanes);
        }
        const int64_t oy = 2 * (t / TW), ox = 2 * (t % TW);
        for (int64_t l = 0; l < lanes; ++l) {
          float* image = y + ((n0 + l) * O + o) * OH * OW + oy * OW + ox;
          image[0] = out[l] + bias[o];
          image[1] = out[kLanes + l] + bias[o];
          image[OW] = out[2 * kLanes + l] + bias[o];
          image[OW + 1] = out[3 * kLanes + l] + bias[o];
        }
      }
    }
  }
}

CAPSNET_INLINE void output_adjoint_impl(const WinogradShape& sh, const float* grad_y, int64_t n,
                                        int64_t O, int64_t o_begin, int64_t o_end,
                                        float* grad_m) {
  const int64_t OH = sh.out_height(), OW = sh.out_width(), TW = OW / 2, T = sh.tiles();
  alignas(64) float tile[36 * kLanes], cols[12 * kLanes], in[4 * kLanes];
  std::fill(in, in + 4 * kLanes, 0.0f);
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t n0 = 0; n0 < n; n0 += kLanes) {
      const int64_t lanes = std::min(kLanes, n - n0);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t oy = 2 * (t / TW), ox = 2 * (t % TW);
        for (int64_t l = 0; l < lanes; ++l) {
          const float* image = grad_y + ((n0 + l) * O + o) * OH * OW + oy * OW + ox;
          in[l] = image[0];
          in[kLanes + l] = image[1];
          in[2 * kLanes + l] = image[OW];
          in[3 * kLanes + l] = image[OW + 1];
        }
        // cols[xi][j] = (A in)[xi][j], then tile[xi][nu] = (cols A^T)[xi][nu].
        for (int64_t j = 0; j < 2; ++j) {
          apply_a(in + j * kLanes, 2 * kLanes, cols + j * kLanes, 2 * kLanes);
        }
        for (int64_t xi = 0; xi < 6; ++xi) {
          apply_a(cols + xi * 2 * kLanes, kLanes, tile + xi * 6 * kLanes, kLanes);
        }
        store_tile(grad_m + o * T * n + t * n + n0, O * T * n, tile, lanes);
      }
    }
  }
}

// G of F(2x2, 5x5), 6 x 5, each entry rounded once to float.
constexpr float kG[6][5] = {{1.0f / 4, 0, 0, 0, 0},
                            {-1.0f / 6, -1.0f / 6, -1.0f / 6, -1.0f / 6, -1.0f / 6},
                            {-1.0f / 6, 1.0f / 6, -1.0f / 6, 1.0f / 6, -1.0f / 6},
                            {1.0f / 24, 1.0f / 12, 1.0f / 6, 1.0f / 3, 2.0f / 3},
                            {1.0f / 24, -1.0f / 12, 1.0f / 6, -1.0f / 3, 2.0f / 3},
                            {0, 0, 0, 0, 1}};

CAPSNET_INLINE void weights_impl(const float* w, int64_t O, int64_t C, int64_t o_begin,
                                 int64_t o_end, float* u) {
  const int64_t C4 = 4 * C;
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t c4 = 0; c4 < C4; ++c4) {
      const Phase ph(c4, C);
      const float* kernel = w + (o * C + ph.c) * 81;
      float g[5][5], half[6][5];
      for (int64_t a = 0; a < 5; ++a) {
        for (int64_t b = 0; b < 5; ++b) {
          const int64_t y = 2 * a + ph.p, x = 2 * b + ph.q;
          g[a][b] = y < 9 && x < 9 ? kernel[y * 9 + x] : 0.0f;
        }
      }
      for (int64_t xi = 0; xi < 6; ++xi) {
        for (int64_t b = 0; b < 5; ++b) {
          float sum = 0;
          for (int64_t a = 0; a < 5; ++a) sum += kG[xi][a] * g[a][b];
          half[xi][b] = sum;
        }
      }
      for (int64_t xi = 0; xi < 6; ++xi) {
        for (int64_t nu = 0; nu < 6; ++nu) {
          float sum = 0;
          for (int64_t b = 0; b < 5; ++b) sum += kG[nu][b] * half[xi][b];
          u[((xi * 6 + nu) * O + o) * C4 + c4] = sum;
        }
      }
    }
  }
}

CAPSNET_INLINE void weights_adjoint_impl(const float* grad_u, int64_t O, int64_t C,
                                         int64_t o_begin, int64_t o_end, float* grad_w) {
  const int64_t C4 = 4 * C;
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t c4 = 0; c4 < C4; ++c4) {
      const Phase ph(c4, C);
      float gu[6][6], half[6][5];
      for (int64_t k = 0; k < 36; ++k) gu[k / 6][k % 6] = grad_u[(k * O + o) * C4 + c4];
      // half = gu G, then the phase's kernel gradient G^T half.
      for (int64_t xi = 0; xi < 6; ++xi) {
        for (int64_t b = 0; b < 5; ++b) {
          float sum = 0;
          for (int64_t nu = 0; nu < 6; ++nu) sum += gu[xi][nu] * kG[nu][b];
          half[xi][b] = sum;
        }
      }
      float* kernel = grad_w + (o * C + ph.c) * 81;
      for (int64_t a = 0; a < 5; ++a) {
        for (int64_t b = 0; b < 5; ++b) {
          const int64_t y = 2 * a + ph.p, x = 2 * b + ph.q;
          if (y >= 9 || x >= 9) continue;
          float sum = 0;
          for (int64_t xi = 0; xi < 6; ++xi) sum += kG[xi][a] * half[xi][b];
          kernel[y * 9 + x] = sum;
        }
      }
    }
  }
}

} // namespace

CAPSNET_DEFINE_DISPATCHED(winograd_input, input_impl,
                          (const WinogradShape& shape, const float* x, int64_t n,
                           int64_t c4_begin, int64_t c4_end, float* v),
                          (shape, x, n, c4_begin, c4_end, v))
CAPSNET_DEFINE_DISPATCHED(winograd_input_adjoint, input_adjoint_impl,
                          (const WinogradShape& shape, const float* grad_v, int64_t n,
                           int64_t c4_begin, int64_t c4_end, float* grad_x),
                          (shape, grad_v, n, c4_begin, c4_end, grad_x))
CAPSNET_DEFINE_DISPATCHED(winograd_output, output_impl,
                          (const WinogradShape& shape, const float* m, int64_t n,
                           int64_t out_channels, int64_t o_begin, int64_t o_end,
                           const float* bias, float* y),
                          (shape, m, n, out_channels, o_begin, o_end, bias, y))
CAPSNET_DEFINE_DISPATCHED(winograd_output_adjoint, output_adjoint_impl,
                          (const WinogradShape& shape, const float* grad_y, int64_t n,
                           int64_t out_channels, int64_t o_begin, int64_t o_end,
                           float* grad_m),
                          (shape, grad_y, n, out_channels, o_begin, o_end, grad_m))

CAPSNET_DEFINE_DISPATCHED(winograd_weights, weights_impl,
                          (const float* weight, int64_t out_channels, int64_t channels,
                           int64_t o_begin, int64_t o_end, float* u),
                          (weight, out_channels, channels, o_begin, o_end, u))
CAPSNET_DEFINE_DISPATCHED(winograd_weights_adjoint, weights_adjoint_impl,
                          (const float* grad_u, int64_t out_channels, int64_t channels,
                           int64_t o_begin, int64_t o_end, float* grad_weight),
                          (grad_u, out_channels, channels, o_begin, o_end, grad_weight))

} // namespace capsnet::cpu
