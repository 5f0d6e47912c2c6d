#include "capsnet/ops/fused_routing.h"

#include "capsnet/ops/squash.h"
#include "op_kernels.h"
#include "cpu/routing_kernel.h"
#ifdef CAPSNET_WITH_CUDA
#include "cuda/routing_cuda.h"
#endif

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <stdexcept>
#include <vector>

namespace capsnet {

namespace {

cpu::RoutingShape shape_of(const at::Tensor& u, const at::Tensor& weight, int64_t iterations,
                           bool parents) {
  return {weight.size(0), weight.size(1), weight.size(2), weight.size(3), iterations, parents,
          kSquashEps};
}

#ifdef CAPSNET_WITH_CUDA
// W [I, J, N, M] as [I, N, J * M], the right-hand side of the GPU's batched u_hat = u W.
at::Tensor weight_rows(const at::Tensor& weight) {
  return weight.permute({0, 2, 1, 3}).reshape({weight.size(0), weight.size(2), -1}).contiguous();
}
#endif

// CPU: kImages images at a time per thread, from prediction to the last
// iteration, so that their u_hat stays in cache (the whole batch's, 94 MB at
// batch 128, would go through memory on every pass) while W and dW (5.9 MB
// each) are streamed once per group rather than once per image. The kernels
// keep u_hat as [J * M, I] and the couplings as [J, I] (i fastest, see
// cpu/routing_kernel.h): coupling is [B, r, J, I] on the CPU.
constexpr int64_t kImages = 8;
void cpu_forward(const cpu::RoutingShape& shape, const at::Tensor& u, const at::Tensor& weight,
                 const at::Tensor& bias, const at::Tensor& coupling, const at::Tensor& s,
                 const at::Tensor& v) {
  const int64_t B = u.size(0), I = shape.n_in, J = shape.n_out, N = shape.d_in,
                M = shape.d_out, r = shape.iterations;
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "fused_routing_forward", [&] {
    const scalar_t* u_ptr = u.data_ptr<scalar_t>();
    const scalar_t* w_ptr = weight.data_ptr<scalar_t>();
    const scalar_t* b_ptr = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    scalar_t* c_ptr = coupling.data_ptr<scalar_t>();
    scalar_t* s_ptr = s.data_ptr<scalar_t>();
    scalar_t* v_ptr = v.data_ptr<scalar_t>();
    const int64_t groups = (B + kImages - 1) / kImages;
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> rows(kImages * cpu::kPredictRows * J * M), u_hat(kImages * I * J * M),
          logits((J + 1) * I);
      for (int64_t g = begin; g < end; ++g) {
        const int64_t first = g * kImages, n = std::min(kImages, B - first);
        cpu::predict(shape, n, u_ptr + first * I * N, w_ptr, rows.data(), u_hat.data());
        for (int64_t k = first; k < first + n; ++k) {
          cpu::routing_forward(shape, u_hat.data() + (k - first) * I * J * M, b_ptr,
                               logits.data(), c_ptr + k * r * I * J, s_ptr + k * r * J * M,
                               v_ptr + k * r * J * M);
        }
      }
    });
  });
}

// Backward of cpu_forward: u_hat is recomputed per group; dW and db are
// summed per thread ([threads, ...] parts) and then over the threads.
void cpu_backward(const cpu::RoutingShape& shape, const at::Tensor& u, const at::Tensor& weight,
                  const at::Tensor& coupling, const at::Tensor& s, const at::Tensor& v,
                  const at::Tensor& grad_v, const at::Tensor& grad_u,
                  const at::Tensor& grad_w_parts, const at::Tensor& grad_bias_parts,
                  bool has_bias) {
  const int64_t B = u.size(0), I = shape.n_in, J = shape.n_out, N = shape.d_in,
                M = shape.d_out, r = shape.iterations;
  const int64_t threads = grad_w_parts.size(0);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "fused_routing_backward", [&] {
    const scalar_t* u_ptr = u.data_ptr<scalar_t>();
    const scalar_t* w_ptr = weight.data_ptr<scalar_t>();
    const scalar_t* c_ptr = coupling.data_ptr<scalar_t>();
    const scalar_t* s_ptr = s.data_ptr<scalar_t>();
    const scalar_t* v_ptr = v.data_ptr<scalar_t>();
    const scalar_t* gv_ptr = grad_v.data_ptr<scalar_t>();
    scalar_t* gu_ptr = grad_u.data_ptr<scalar_t>();
    const int64_t groups = (B + kImages - 1) / kImages;
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      const int64_t thread = at::get_thread_num();
      TORCH_INTERNAL_ASSERT(thread < threads, "thread ", thread, " of ", threads);
      std::vector<scalar_t> rows(kImages * cpu::kPredictRows * J * M), u_hat(kImages * I * J * M),
          grad_u_hat(kImages * I * J * M), grad_logits((J + 1) * I), grad_coupling(J * I),
          grad_v_t(J * M), grad_s(J * M);
      scalar_t* gw = grad_w_parts.data_ptr<scalar_t>() + thread * I * N * J * M;
      scalar_t* gb = has_bias ? grad_bias_parts.data_ptr<scalar_t>() + thread * J * M : nullptr;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t first = g * kImages, n = std::min(kImages, B - first);
        cpu::predict(shape, n, u_ptr + first * I * N, w_ptr, rows.data(), u_hat.data());
        for (int64_t k = first; k < first + n; ++k) {
          const int64_t slot = (k - first) * I * J * M;
          cpu::routing_backward(shape, u_hat.data() + slot, c_ptr + k * r * I * J,
                                s_ptr + k * r * J * M, v_ptr + k * r * J * M,
                                gv_ptr + k * J * M, grad_u_hat.data() + slot, gb,
                                grad_logits.data(), grad_coupling.data(), grad_v_t.data(),
                                grad_s.data());
        }
        cpu::predict_backward(shape, n, u_ptr + first * I * N, w_ptr, grad_u_hat.data(),
                              rows.data(), gu_ptr + first * I * N, gw);
      }
    });
  });
}

#ifdef CAPSNET_WITH_CUDA
// GPU: u_hat of the whole batch, [I, B, J * M], from one batched GEMM; one
// thread block per image runs the iterations.
void cuda_forward(const cpu::RoutingShape& shape, const at::Tensor& u, const at::Tensor& w_rows,
                  const at::Tensor& bias, const at::Tensor& coupling, const at::Tensor& s,
                  const at::Tensor& v) {
  const int64_t B = u.size(0), I = shape.n_in, J = shape.n_out;
  const auto u_hat = at::bmm(u.transpose(0, 1), w_rows);
  auto logits = at::empty({B, I, J}, u.options());
  cuda::routing_forward(u_hat.get_device(), shape, B, u_hat.data_ptr<float>(),
                        bias.defined() ? bias.data_ptr<float>() : nullptr,
                        logits.data_ptr<float>(), coupling.data_ptr<float>(), s.data_ptr<float>(),
                        v.data_ptr<float>());
}

void cuda_backward(const cpu::RoutingShape& shape, const at::Tensor& u, const at::Tensor& w_rows,
                   const at::Tensor& coupling, const at::Tensor& s, const at::Tensor& v,
                   const at::Tensor& grad_v, const at::Tensor& grad_u,
                   const at::Tensor& grad_w_rows, const at::Tensor& grad_bias_parts,
                   bool has_bias) {
  const int64_t B = u.size(0), I = shape.n_in, J = shape.n_out;
  const auto u_t = u.transpose(0, 1);           // [I, B, N]
  const auto u_hat = at::bmm(u_t, w_rows);      // recomputed, [I, B, J * M]
  auto grad_u_hat = at::empty_like(u_hat);
  auto grad_logits = at::empty({B, I, J}, u.options());
  auto grad_coupling = at::empty({B, I, J}, u.options());
  cuda::routing_backward(u_hat.get_device(), shape, B, u_hat.data_ptr<float>(), coupling.data_ptr<float>(),
                         s.data_ptr<float>(), v.data_ptr<float>(), grad_v.data_ptr<float>(),
                         grad_u_hat.data_ptr<float>(),
                         has_bias ? grad_bias_parts.data_ptr<float>() : nullptr,
                         grad_logits.data_ptr<float>(), grad_coupling.data_ptr<float>());
  // dW[i] = u[:, i]^T dL/du_hat[i];  du[:, i] = dL/du_hat[i] W[i]^T.
  grad_w_rows.copy_(at::bmm(u_t.transpose(1, 2), grad_u_hat));
  grad_u.transpose(0, 1).copy_(at::bmm(grad_u_hat, w_rows.transpose(1, 2)));
}
#endif

} // namespace

void check_routing_arguments(const at::Tensor& u, const at::Tensor& weight,
                             const c10::optional<at::Tensor>& bias, int64_t iterations) {
  TORCH_CHECK(u.dim() == 3, "expected u of shape [B, N_in, D_in], got ", u.sizes());
  TORCH_CHECK(weight.dim() == 4, "expected weight of shape [N_in, N_out, D_in, D_out], got ",
              weight.sizes());
  TORCH_CHECK(u.size(1) == weight.size(0) && u.size(2) == weight.size(2), "u ", u.sizes(),
              " does not match weight ", weight.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->dim() == 2 && bias->size(0) == weight.size(1) &&
                            bias->size(1) == weight.size(3)),
              "expected bias of shape [N_out, D_out] = [", weight.size(1), ", ", weight.size(3),
              "], got ", bias->sizes());
  TORCH_CHECK(iterations >= 1, "expected at least one routing iteration, got ", iterations);
  TORCH_CHECK(u.device() == weight.device() && (!has_bias || bias->device() == u.device()),
              "u, weight and bias must be on one device, got ", u.device(), " and ",
              weight.device());
  TORCH_CHECK(u.device().is_cpu() || (u.is_cuda() && fused_routing_supports(u.device())),
              "the fused routing op has no kernel for ", u.device(),
              " in this build (configure with -DCAPSNET_USE_CUDA=ON); use the reference routing");
  TORCH_CHECK(u.scalar_type() == weight.scalar_type() &&
                  (!has_bias || bias->scalar_type() == u.scalar_type()) &&
                  (u.scalar_type() == at::kFloat ||
                   (u.scalar_type() == at::kDouble && u.device().is_cpu())),
              "the fused routing op takes float (or, on the CPU, double) u, weight and bias of "
              "one type, got ", u.scalar_type(), " and ", weight.scalar_type(), " on ",
              u.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_routing_forward(
    const at::Tensor& u_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias_in,
    int64_t iterations, bool parents) {
  check_routing_arguments(u_in, weight_in, bias_in, iterations);
  const auto u = u_in.contiguous();
  const auto weight = weight_in.contiguous();
  const auto bias = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : at::Tensor();
  const auto shape = shape_of(u, weight, iterations, parents);
  const int64_t B = u.size(0), I = shape.n_in, J = shape.n_out, M = shape.d_out;
  const int64_t r = iterations;
  // The couplings as each device's kernels keep them: [B, r, J, I] on the
  // CPU, [B, r, I, J] on a GPU.
  auto coupling = u.is_cuda() ? at::empty({B, r, I, J}, u.options())
                              : at::empty({B, r, J, I}, u.options());
  auto s = at::empty({B, r, J, M}, u.options());
  auto v = at::empty({B, r, J, M}, u.options());
  if (u.is_cuda()) {
#ifdef CAPSNET_WITH_CUDA
    cuda_forward(shape, u, weight_rows(weight), bias, coupling, s, v);
#else
    TORCH_CHECK(false, "this build has no CUDA kernels for the fused routing op");
#endif
  } else {
    cpu_forward(shape, u, weight, bias, coupling, s, v);
  }
  return {v.select(1, r - 1).clone(), coupling, s, v};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_routing_backward(
    const at::Tensor& grad_v_in, const at::Tensor& u_in, const at::Tensor& weight_in,
    const at::Tensor& coupling, const at::Tensor& s, const at::Tensor& v, int64_t iterations,
    bool parents, bool has_bias) {
  const auto u = u_in.contiguous();
  const auto weight = weight_in.contiguous();
  const int64_t I = weight.size(0), J = weight.size(1), N = weight.size(2), M = weight.size(3);
  TORCH_CHECK(coupling.dim() == 4 && coupling.size(0) == u.size(0) &&
                  coupling.size(1) == iterations && s.sizes() == v.sizes() &&
                  grad_v_in.dim() == 3 && grad_v_in.size(0) == u.size(0),
              "fused routing backward: saved tensors do not match u ", u.sizes());
  const cpu::RoutingShape shape{I, J, N, M, iterations, parents, kSquashEps};
  const auto grad_v = grad_v_in.contiguous();
  auto grad_u = at::empty_like(u);
  at::Tensor grad_weight;
  // dW and db: one accumulator per CPU thread, summed at the end; one on a GPU.
  const int64_t threads = u.is_cuda() ? 1 : at::get_num_threads();
  auto grad_bias_parts = at::zeros({threads, J, M}, u.options());
  if (u.is_cuda()) {
#ifdef CAPSNET_WITH_CUDA
    const auto w_rows = weight_rows(weight);
    auto grad_w_rows = at::empty_like(w_rows);
    cuda_backward(shape, u, w_rows, coupling.contiguous(), s.contiguous(), v.contiguous(), grad_v,
                  grad_u, grad_w_rows, grad_bias_parts, has_bias);
    grad_weight = grad_w_rows.view({I, N, J, M}).permute({0, 2, 1, 3}).contiguous();
#else
    TORCH_CHECK(false, "this build has no CUDA kernels for the fused routing op");
#endif
  } else {
    // The CPU kernels read W and write dW in W's own layout.
    auto grad_w_parts = at::zeros({threads, I, J, N, M}, u.options());
    cpu_backward(shape, u, weight, coupling.contiguous(), s.contiguous(), v.contiguous(), grad_v,
                 grad_u, grad_w_parts, grad_bias_parts, has_bias);
    grad_weight = threads == 1 ? grad_w_parts[0] : grad_w_parts.sum(0);
  }
  // No bias: an empty tensor (a registered op returns tensors, not None).
  auto grad_bias = has_bias ? grad_bias_parts.sum(0) : at::empty({0}, u.options());
  return {grad_u, grad_weight, grad_bias};
}


bool fused_routing_supports(const c10::Device& device) {
  if (device.is_cpu()) return true;
#ifdef CAPSNET_WITH_CUDA
  return device.is_cuda();
#else
  return false;
#endif
}

} // namespace capsnet
