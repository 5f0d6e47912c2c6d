#include "capsnet/ops/cpu_features.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace capsnet {

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string trimmed(std::string s) {
  s.erase(0, s.find_first_not_of(' '));
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

// oneDNN's ISA limit, under its current or its former name.
std::string onednn_limit() {
  const auto limit = env("ONEDNN_MAX_CPU_ISA");
  return limit.empty() ? env("DNNL_MAX_CPU_ISA") : limit;
}

bool limit_allows_bf16(const std::string& onednn_max_isa) {
  const auto limit = upper(onednn_max_isa);
  return limit.empty() || limit == "ALL" || limit == "AVX512_CORE_BF16" ||
         limit == "AVX512_CORE_FP16" || limit.rfind("AVX512_CORE_AMX", 0) == 0;
}

CpuFeatures detect() {
  CpuFeatures f;
  f.onednn_max_isa = onednn_limit();
  f.aten_capability = env("ATEN_CPU_CAPABILITY");
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  unsigned brand[12] = {};
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
    char vendor[13] = {};
    std::memcpy(vendor, &ebx, 4);
    std::memcpy(vendor + 4, &edx, 4);
    std::memcpy(vendor + 8, &ecx, 4);
    f.intel = std::strcmp(vendor, "GenuineIntel") == 0;
  }
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) && eax >= 0x80000004u) {
    for (unsigned leaf = 0; leaf < 3; ++leaf) {
      __get_cpuid(0x80000002u + leaf, &brand[4 * leaf], &brand[4 * leaf + 1],
                  &brand[4 * leaf + 2], &brand[4 * leaf + 3]);
    }
    char text[49] = {};
    std::memcpy(text, brand, 48);
    f.model = trimmed(text);
  }
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  f.fma = ecx & (1u << 12);
  const bool osxsave = ecx & (1u << 27);
  unsigned xcr0 = 0, xcr0_hi = 0;
  if (osxsave) __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
  const bool os_avx = (xcr0 & 0x6u) == 0x6u;             // SSE, AVX state
  const bool os_avx512 = (xcr0 & 0xe6u) == 0xe6u;        // and opmask, ZMM state
  const bool os_amx = (xcr0 & 0x60000u) == 0x60000u;     // XTILECFG, XTILEDATA
  unsigned l7_ebx = 0, l7_edx = 0, l71_eax = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    l7_ebx = ebx;
    l7_edx = edx;
  }
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) l71_eax = eax;
  f.avx2 = os_avx && (l7_ebx & (1u << 5));
  f.fma = f.fma && os_avx;
  // F (16), DQ (17), BW (30), VL (31): what oneDNN's avx512_core needs.
  const unsigned avx512_core = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
  const bool cpu_avx512 = (l7_ebx & avx512_core) == avx512_core;
  f.avx512 = cpu_avx512 && os_avx512;
  f.os_disabled_avx512 = cpu_avx512 && !os_avx512;
  f.avx512_bf16 = f.avx512 && (l71_eax & (1u << 5));
  f.amx_bf16 = f.avx512 && os_amx && (l7_edx & (1u << 22));
#endif
  if (f.model.empty()) f.model = "unknown CPU";
  return f;
}

} // namespace

std::string CpuFeatures::isa() const {
  std::string out;
  auto add = [&](bool has, const char* name) {
    if (has) out += (out.empty() ? "" : " ") + std::string(name);
  };
  add(avx2, "AVX2");
  add(fma, "FMA");
  add(avx512, "AVX-512");
  add(avx512_bf16, "AVX512-BF16");
  add(amx_bf16, "AMX-BF16");
  return out.empty() ? "SSE only" : out;
}

std::string CpuFeatures::describe() const {
  std::string limits;
  if (!onednn_max_isa.empty()) limits += " ONEDNN_MAX_CPU_ISA=" + onednn_max_isa;
  if (!aten_capability.empty()) limits += " ATEN_CPU_CAPABILITY=" + aten_capability;
  return model + ", " + isa() + (limits.empty() ? "" : ", limited by" + limits);
}

bool CpuFeatures::onednn_allows_bf16() const { return limit_allows_bf16(onednn_max_isa); }

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

KernelIsa kernel_isa() {
  static const KernelIsa isa = [] {
    const auto& cpu = cpu_features();
    KernelIsa widest = cpu.avx512 && cpu.fma ? KernelIsa::kAvx512
                       : cpu.avx2 && cpu.fma ? KernelIsa::kAvx2
                                             : KernelIsa::kBaseline;
    const auto limit = upper(cpu.aten_capability);
    if (limit == "DEFAULT") return KernelIsa::kBaseline;
    if (limit == "AVX2") return std::min(widest, KernelIsa::kAvx2);
    return widest;
  }();
  return isa;
}

Bf16Support cpu_bf16_support() {
  Bf16Support support;
  if (env("CAPSNET_NO_BF16") == "1") {
    support.why_not = "CAPSNET_NO_BF16=1 is set";
    return support;
  }
  const auto& cpu = cpu_features();
  if (!cpu.amx_bf16 && !cpu.avx512_bf16) {
    support.why_not = "this CPU (" + cpu.model + ", " + cpu.isa() +
                      ") has neither AVX512-BF16 nor AMX-BF16" +
                      (cpu.os_disabled_avx512 ? " enabled: the OS has not enabled AVX-512 state"
                                              : "");
    return support;
  }
  const auto limit = onednn_limit(); // read now: tests change it
  if (!limit_allows_bf16(limit)) {
    support.why_not = "ONEDNN_MAX_CPU_ISA=" + limit + " keeps oneDNN below AVX512_CORE_BF16";
    return support;
  }
  support.available = true;
  support.isa = cpu.amx_bf16 ? "AMX-BF16" : "AVX512-BF16";
  support.not_faster = bf16_not_faster(cpu);
  return support;
}

std::string bf16_not_faster(const CpuFeatures& cpu) {
  if (!cpu.intel || !cpu.avx512_bf16 || cpu.amx_bf16) return "";
  return "this Intel CPU (" + cpu.model +
         ") has AVX512-BF16 but no AMX-BF16 (or its OS or hypervisor hides it), and runs bf16 "
         "matrix products no faster than fp32 ones; fp32 is likely the faster choice here "
         "(`capsnet bench --precision bf16` measures both)";
}

} // namespace capsnet
