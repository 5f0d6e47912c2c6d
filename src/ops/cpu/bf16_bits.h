#pragma once

// bfloat16 as the 16 high bits of a float, stored in uint16_t: conversions
// in plain integer arithmetic that the vectoriser maps onto lanes.

#include "isa_dispatch.h"

#include <cstdint>
#include <cstring>

namespace capsnet::cpu {

/// Rounds to the nearest bfloat16, ties to even (as c10::BFloat16); NaN stays NaN.
CAPSNET_INLINE uint16_t to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; // NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// Exact.
CAPSNET_INLINE float from_bf16(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

/// A stored value as arithmetic: floats and doubles as they are, bfloat16 as float.
CAPSNET_INLINE float widen(float value) {
  return value;
}
CAPSNET_INLINE double widen(double value) {
  return value;
}
CAPSNET_INLINE float widen(uint16_t value) {
  return from_bf16(value);
}

/// Stores a value in the array's type (bfloat16 rounded to nearest even).
CAPSNET_INLINE void store(float* at, float value) {
  *at = value;
}
CAPSNET_INLINE void store(double* at, double value) {
  *at = value;
}
CAPSNET_INLINE void store(uint16_t* at, float value) {
  *at = to_bf16(value);
}

} // namespace capsnet::cpu
