#include "capsnet/engine/runtime.h"

#include "capsnet/engine/options.h"

#include <ATen/Parallel.h>

#include <malloc.h>

namespace capsnet {

int configure_runtime(int threads) {
  const int count = resolve_threads(threads);
  at::set_num_threads(count);
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
  return count;
}

} // namespace capsnet
