#pragma once

#include <ATen/ATen.h>

#include <iosfwd>
#include <string>

namespace capsnet {

/// Arithmetic of the heavy layers. Master weights, optimizer state, losses
/// and routing stay in fp32 either way.
enum class Precision {
  kFp32,
  kBf16, ///< the primary-capsule convolution in bfloat16 (conv2d_bf16)
};

std::string to_string(Precision precision);
/// Parses "fp32" or "bf16"; throws std::invalid_argument otherwise.
Precision precision_from_string(const std::string& name);

/// Whether this CPU runs bf16 matrix products in hardware.
struct Bf16Support {
  bool available = false;
  std::string isa; ///< "AMX-BF16" or "AVX512-BF16" when available
  std::string why_not; ///< when not available: what is missing
};
/// Reads CPUID and XCR0. Setting CAPSNET_NO_BF16=1 reports no support (to try
/// the fp32 fallback on any machine).
Bf16Support cpu_bf16_support();

/// `requested`, or kFp32 with a message on `warnings` when it is kBf16, the
/// device is the CPU and this CPU lacks bf16 hardware (GPUs run bf16 in cuDNN).
Precision usable_precision(Precision requested, std::ostream& warnings,
                           const c10::Device& device = c10::Device(c10::kCPU));

/// A 2-D convolution (no padding, square kernel) computed as im2col + GEMMs in
/// bfloat16 through oneDNN, which on AMX/AVX512-BF16 CPUs is several times the
/// fp32 throughput; oneDNN 2.6's own bf16 convolution backward is slower than
/// fp32 on such CPUs. Inputs, weights and outputs are float: x and weight are
/// rounded to bf16, products are accumulated in fp32 and rounded to bf16, the
/// bias is added in fp32. Gradients: grad_x and grad_weight from bf16 GEMMs of
/// the bf16-rounded output gradient, grad_bias in fp32.
/// Shapes: x [B, C, H, W], weight [O, C, K, K], bias [O] -> [B, O, OH, OW].
at::Tensor conv2d_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride);

} // namespace capsnet
