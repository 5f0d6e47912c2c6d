#pragma once

// One kernel compiled for each instruction set and chosen at run time by
// kernel_isa(), which ATEN_CPU_CAPABILITY narrows: an AVX-512 machine can
// then run, and test, the AVX2 code. The body is an always-inline function
// that GCC vectorises anew inside each variant.

#include "capsnet/ops/cpu_features.h"

#define CAPSNET_INLINE inline __attribute__((always_inline))

#define CAPSNET_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define CAPSNET_TARGET_AVX2 __attribute__((target("avx2,fma")))

// Defines `void name params` that calls `impl args` compiled for AVX-512,
// AVX2 or the baseline, as kernel_isa() says.
#define CAPSNET_DEFINE_DISPATCHED(name, impl, params, args)                  \
  CAPSNET_TARGET_AVX512 static void name##_avx512 params { impl args; }      \
  CAPSNET_TARGET_AVX2 static void name##_avx2 params { impl args; }          \
  static void name##_baseline params { impl args; }                          \
  void name params {                                                         \
    switch (::capsnet::kernel_isa()) {                                       \
      case ::capsnet::KernelIsa::kAvx512: return name##_avx512 args;         \
      case ::capsnet::KernelIsa::kAvx2: return name##_avx2 args;             \
      default: return name##_baseline args;                                  \
    }                                                                        \
  }
