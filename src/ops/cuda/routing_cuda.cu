// CUDA kernels of the fused dynamic-routing op; see routing_cuda.h. The
// arithmetic follows cpu/routing_kernel.cpp line by line: one thread block
// per image, phases separated by __syncthreads().
#include "routing_cuda.h"

// c10 headers only, no ATen (2.x: ATen/cuda/CUDAContext.h includes
// ATen/cuda/CUDAContextLight.h, hence cuBLAS, cuBLASLt, cuSPARSE and cuSOLVER
// headers that a LibTorch wheel leaves to nvidia-* packages, and ATen's core
// headers, of which nvcc 13 in C++17 mode is reported to reject
// ATen/core/List_inl.h with torch 2.11.0+cu130). c10::cuda::getCurrentCUDAStream,
// in c10/cuda/CUDAStream.h from 1.13 through 2.x, is the stream
// at::cuda::getCurrentCUDAStream returns.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace capsnet::cuda {

namespace {

constexpr int kThreads = 256; // a power of two: the reductions halve it

struct Dims {
  int I, J, M, r;
  bool parents;
  float eps;
  int64_t row; // between input capsules i in u_hat: images * J * M
};

Dims dims_of(const cpu::RoutingShape& sh, int64_t images) {
  return {int(sh.n_in), int(sh.n_out), int(sh.d_out), int(sh.iterations),
          sh.softmax_over_parents, float(sh.eps), images * sh.n_out * sh.d_out};
}

// Sum or max over the block; every thread gets the result.
__device__ float block_reduce(float value, float* scratch, bool take_max) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float other = scratch[threadIdx.x + half];
      scratch[threadIdx.x] = take_max ? fmaxf(scratch[threadIdx.x], other)
                                      : scratch[threadIdx.x] + other;
    }
    __syncthreads();
  }
  const float result = scratch[0];
  __syncthreads();
  return result;
}

// c = softmax(b) over parents j (each row i) or over children i (each column j).
__device__ void softmax(const Dims& d, const float* b, float* c, float* scratch) {
  if (d.parents) {
    for (int i = threadIdx.x; i < d.I; i += blockDim.x) {
      float top = b[i * d.J];
      for (int j = 1; j < d.J; ++j) top = fmaxf(top, b[i * d.J + j]);
      float sum = 0;
      for (int j = 0; j < d.J; ++j) sum += c[i * d.J + j] = expf(b[i * d.J + j] - top);
      for (int j = 0; j < d.J; ++j) c[i * d.J + j] /= sum;
    }
  } else {
    for (int j = 0; j < d.J; ++j) {
      float top = -INFINITY;
      for (int i = threadIdx.x; i < d.I; i += blockDim.x) top = fmaxf(top, b[i * d.J + j]);
      top = block_reduce(top, scratch, true);
      float sum = 0;
      for (int i = threadIdx.x; i < d.I; i += blockDim.x) sum += expf(b[i * d.J + j] - top);
      sum = block_reduce(sum, scratch, false);
      for (int i = threadIdx.x; i < d.I; i += blockDim.x) {
        c[i * d.J + j] = expf(b[i * d.J + j] - top) / sum;
      }
    }
  }
  __syncthreads();
}

__global__ void forward_kernel(Dims d, const float* u_hat, const float* bias, float* logits,
                               float* coupling, float* s, float* v) {
  extern __shared__ float shared[];
  const int JM = d.J * d.M;
  float* s_sh = shared;          // [J * M]
  float* v_sh = shared + JM;     // [J * M]
  float* scratch = shared + 2 * JM; // [blockDim.x]
  const int64_t k = blockIdx.x;
  const float* uh = u_hat + k * JM; // uh[i * row + j * M + m]
  float* b = logits + k * d.I * d.J;
  for (int ij = threadIdx.x; ij < d.I * d.J; ij += blockDim.x) b[ij] = 0;
  __syncthreads();
  for (int t = 0; t < d.r; ++t) {
    float* c = coupling + (k * d.r + t) * d.I * d.J;
    float* st = s + (k * d.r + t) * JM;
    float* vt = v + (k * d.r + t) * JM;
    softmax(d, b, c, scratch);
    // s_j = sum_i c_ij u_hat_ij (+ bias_j)
    for (int jm = threadIdx.x; jm < JM; jm += blockDim.x) {
      const int j = jm / d.M;
      float acc = bias ? bias[jm] : 0.0f;
      for (int i = 0; i < d.I; ++i) acc += c[i * d.J + j] * uh[i * d.row + jm];
      st[jm] = s_sh[jm] = acc;
    }
    __syncthreads();
    // v_j = squash(s_j), Eq. 1
    for (int j = threadIdx.x; j < d.J; j += blockDim.x) {
      float q = 0;
      for (int m = 0; m < d.M; ++m) q += s_sh[j * d.M + m] * s_sh[j * d.M + m];
      const float scale = q / ((1 + q) * sqrtf(q + d.eps));
      for (int m = 0; m < d.M; ++m) vt[j * d.M + m] = v_sh[j * d.M + m] = scale * s_sh[j * d.M + m];
    }
    __syncthreads();
    if (t + 1 == d.r) break; // the last agreement would not be used
    // b_ij += u_hat_ij . v_j
    for (int ij = threadIdx.x; ij < d.I * d.J; ij += blockDim.x) {
      const int i = ij / d.J, j = ij % d.J;
      float agreement = 0;
      for (int m = 0; m < d.M; ++m) agreement += uh[i * d.row + j * d.M + m] * v_sh[j * d.M + m];
      b[ij] += agreement;
    }
    __syncthreads();
  }
}

__global__ void backward_kernel(Dims d, const float* u_hat, const float* coupling, const float* s,
                                const float* v, const float* grad_v, float* grad_u_hat,
                                float* grad_bias, float* grad_logits, float* grad_coupling) {
  extern __shared__ float shared[];
  const int JM = d.J * d.M;
  float* gv = shared;               // dL/dv^t [J * M]
  float* gs = shared + JM;          // dL/ds^t [J * M]
  float* scratch = shared + 2 * JM; // [blockDim.x]
  const int64_t k = blockIdx.x;
  const float* uh = u_hat + k * JM;
  float* guh = grad_u_hat + k * JM;
  float* gl = grad_logits + k * d.I * d.J; // dL/db^{t+1}; b^r does not exist
  float* gc = grad_coupling + k * d.I * d.J;
  for (int64_t idx = threadIdx.x; idx < int64_t(d.I) * JM; idx += blockDim.x) {
    guh[(idx / JM) * d.row + idx % JM] = 0;
  }
  for (int ij = threadIdx.x; ij < d.I * d.J; ij += blockDim.x) gl[ij] = 0;
  __syncthreads();
  for (int t = d.r - 1; t >= 0; --t) {
    const float* c = coupling + (k * d.r + t) * d.I * d.J;
    const float* st = s + (k * d.r + t) * JM;
    const float* vt = v + (k * d.r + t) * JM;
    if (t + 1 == d.r) {
      for (int jm = threadIdx.x; jm < JM; jm += blockDim.x) gv[jm] = grad_v[k * JM + jm];
    } else {
      // b^{t+1}_ij = b^t_ij + u_hat_ij . v^t_j
      for (int jm = threadIdx.x; jm < JM; jm += blockDim.x) {
        const int j = jm / d.M;
        float acc = 0;
        for (int i = 0; i < d.I; ++i) acc += gl[i * d.J + j] * uh[i * d.row + jm];
        gv[jm] = acc;
      }
      for (int64_t idx = threadIdx.x; idx < int64_t(d.I) * JM; idx += blockDim.x) {
        const int i = int(idx / JM), jm = int(idx % JM), j = jm / d.M;
        guh[i * d.row + jm] += gl[i * d.J + j] * vt[jm];
      }
    }
    __syncthreads();
    // v = g(q) s: ds = g dv + 2 g'(q) (s . dv) s (see cpu/routing_kernel.cpp)
    for (int j = threadIdx.x; j < d.J; j += blockDim.x) {
      float q = 0, s_dot_g = 0;
      for (int m = 0; m < d.M; ++m) {
        q += st[j * d.M + m] * st[j * d.M + m];
        s_dot_g += st[j * d.M + m] * gv[j * d.M + m];
      }
      const float qe = q + d.eps;
      const float h = 1 / ((1 + q) * sqrtf(qe));
      const float g = q * h;
      const float dg = h * (1 - q / (1 + q) - q / (2 * qe));
      for (int m = 0; m < d.M; ++m) {
        gs[j * d.M + m] = g * gv[j * d.M + m] + 2 * dg * s_dot_g * st[j * d.M + m];
      }
    }
    __syncthreads();
    if (grad_bias) {
      for (int jm = threadIdx.x; jm < JM; jm += blockDim.x) atomicAdd(grad_bias + jm, gs[jm]);
    }
    // s^t_j = sum_i c_ij u_hat_ij
    for (int ij = threadIdx.x; ij < d.I * d.J; ij += blockDim.x) {
      const int i = ij / d.J, j = ij % d.J;
      const float cij = c[ij];
      float acc = 0;
      for (int m = 0; m < d.M; ++m) {
        acc += gs[j * d.M + m] * uh[i * d.row + j * d.M + m];
        guh[i * d.row + j * d.M + m] += cij * gs[j * d.M + m];
      }
      gc[ij] = acc;
    }
    __syncthreads();
    // c^t = softmax(b^t): dL/db^t = dL/db^{t+1} + the softmax's backward
    if (d.parents) {
      for (int i = threadIdx.x; i < d.I; i += blockDim.x) {
        float dot = 0;
        for (int j = 0; j < d.J; ++j) dot += c[i * d.J + j] * gc[i * d.J + j];
        for (int j = 0; j < d.J; ++j) gl[i * d.J + j] += c[i * d.J + j] * (gc[i * d.J + j] - dot);
      }
    } else {
      for (int j = 0; j < d.J; ++j) {
        float part = 0;
        for (int i = threadIdx.x; i < d.I; i += blockDim.x) part += c[i * d.J + j] * gc[i * d.J + j];
        const float dot = block_reduce(part, scratch, false);
        for (int i = threadIdx.x; i < d.I; i += blockDim.x) {
          gl[i * d.J + j] += c[i * d.J + j] * (gc[i * d.J + j] - dot);
        }
      }
    }
    __syncthreads();
  }
}

size_t shared_bytes(const Dims& d) { return (2 * d.J * d.M + kThreads) * sizeof(float); }

} // namespace

void routing_forward(int device, const cpu::RoutingShape& shape, int64_t images,
                     const float* u_hat, const float* bias, float* logits, float* coupling,
                     float* s, float* v) {
  if (images == 0) return;
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const Dims d = dims_of(shape, images);
  forward_kernel<<<unsigned(images), kThreads, shared_bytes(d), c10::cuda::getCurrentCUDAStream()>>>(
      d, u_hat, bias, logits, coupling, s, v);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void routing_backward(int device, const cpu::RoutingShape& shape, int64_t images,
                      const float* u_hat, const float* coupling, const float* s, const float* v,
                      const float* grad_v, float* grad_u_hat, float* grad_bias,
                      float* grad_logits, float* grad_coupling) {
  if (images == 0) return;
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const Dims d = dims_of(shape, images);
  backward_kernel<<<unsigned(images), kThreads, shared_bytes(d), c10::cuda::getCurrentCUDAStream()>>>(
      d, u_hat, coupling, s, v, grad_v, grad_u_hat, grad_bias, grad_logits, grad_coupling);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

} // namespace capsnet::cuda
