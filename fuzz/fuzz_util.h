#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace capsnet::fuzz {

/// A file of this process's own (the readers take paths), in memory where
/// /dev/shm exists: the targets write one per execution.
inline std::string scratch_path(const std::string& name) {
  static const std::string dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return dir + "/capsnet-fuzz-" + std::to_string(::getpid()) + "-" + name;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

} // namespace capsnet::fuzz
