// Process-wide tuning that belongs to the program, not the library (a
// library embedded in someone else's program must not restart it or change
// its allocator): the BLAS kernel and glibc's malloc.
#include "process.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

// Present when OpenBLAS is the process's BLAS (Debian: libblas.so.3 alternative).
extern "C" char* openblas_get_corename() __attribute__((weak));

namespace capsnet::cli {

void ensure_fast_blas(char** argv) {
#if defined(__x86_64__) && defined(__linux__)
  if (std::getenv("OPENBLAS_CORETYPE") || !openblas_get_corename) return;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  const char* core = openblas_get_corename();
  // The SSE-era kernels OpenBLAS falls back to for a CPU it does not know.
  static const char* const kGeneric[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                         "atom", "northwood", "banias", "katmai", "coppermine",
                                         "athlon", "opteron", "barcelona", "unknown"};
  bool generic = false;
  for (const char* name : kGeneric) generic = generic || strcasecmp(core, name) == 0;
  if (!generic) return;
  std::fprintf(stderr,
               "capsnet: OpenBLAS picked its generic '%s' kernel on this AVX2 CPU; restarting "
               "with OPENBLAS_CORETYPE=Haswell (set OPENBLAS_CORETYPE to choose yourself)\n",
               core);
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  execv("/proc/self/exe", argv);
  std::perror("capsnet: re-exec failed; continuing with the generic kernel");
#else
  (void)argv;
#endif
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

} // namespace capsnet::cli
