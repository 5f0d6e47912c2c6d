#pragma once

#include "capsnet/io/enum_names.h"

#include <string>

namespace capsnet {

/// What this x86-64 CPU offers the kernels, from CPUID and XCR0, and the
/// environment variables that narrow what the libraries use.
struct CpuFeatures {
  std::string model; ///< CPUID's brand string, e.g. "AMD EPYC 7B13"
  bool intel = false; ///< CPUID's vendor is GenuineIntel
  /// AVX2 in the CPU, and enabled by the OS.
  bool avx2 = false, fma = false; ///< FMA3 in the CPU, and enabled by the OS
  bool avx512 = false;      ///< AVX-512 F, BW, VL and DQ in the CPU, and enabled by the OS
  bool avx512_bf16 = false; ///< and enabled by the OS
  bool amx_bf16 = false;    ///< and enabled by the OS
  bool os_disabled_avx512 = false; ///< the CPU has AVX-512 but XCR0 does not enable its state
  std::string onednn_max_isa;      ///< ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), "" when unset
  std::string aten_capability;     ///< ATEN_CPU_CAPABILITY, "" when unset

  /// "AVX2 FMA", "AVX2 FMA AVX-512 AVX512-BF16", ... as the CPU has them.
  std::string isa() const;
  /// The ISA with the environment's limits, e.g. "AVX2 FMA AVX-512 AVX512-BF16,
  /// limited by ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2".
  std::string describe() const;
  /// Whether ONEDNN_MAX_CPU_ISA lets oneDNN use bf16 instructions (AVX512_CORE_BF16 or AMX).
  bool onednn_allows_bf16() const;
};

/// Read once per process (the environment as it was then).
const CpuFeatures& cpu_features();

/// The instruction set capsnet's own CPU kernels (routing, im2col) run with:
/// the widest this CPU has, narrowed by ATEN_CPU_CAPABILITY (default, avx2 or
/// avx512) as ATen's own kernels are, so that one machine can test the others'.
enum class KernelIsa { kBaseline, kAvx2, kAvx512 };
KernelIsa kernel_isa();
CAPSNET_ENUM_NAMES(KernelIsa, "kernel ISA",
                   {{KernelIsa::kBaseline, "baseline x86-64"},
                    {KernelIsa::kAvx2, "AVX2"},
                    {KernelIsa::kAvx512, "AVX-512"}})

/// Whether this CPU runs bf16 matrix products in hardware.
struct Bf16Support {
  bool available = false; ///< bf16 runs in hardware here, and the environment allows it
  std::string isa;     ///< "AMX-BF16" or "AVX512-BF16" when available
  std::string why_not; ///< when not available: what is missing, naming the CPU
  /// When available but not expected to be faster than fp32 (bf16_not_faster()).
  std::string not_faster;
};
/// Why bf16 would not be faster than fp32 on `cpu`, or "" when it should be:
/// an Intel CPU with AVX512-BF16 but no AMX-BF16 (absent, or hidden by its OS
/// or hypervisor) runs a bf16 dot product (VDPBF16PS) on one port, the same
/// FLOPs a cycle as fp32 FMAs on two; AMD's Zen 4 and Zen 5 run it at twice
/// fp32's rate. Measured on an Emerald Rapids Xeon without AMX (make bench at
/// 1849f6f): the bf16 probe at 0.66x the fp32 probe, bf16 training at 0.75x
/// fp32, inference at 0.82x (docs/performance.md).
std::string bf16_not_faster(const CpuFeatures& cpu);
/// From cpu_features(). Setting CAPSNET_NO_BF16=1 reports no support (to try
/// the fp32 fallback on any machine); so does a ONEDNN_MAX_CPU_ISA below
/// AVX512_CORE_BF16. Reads the environment on every call.
Bf16Support cpu_bf16_support();

} // namespace capsnet
