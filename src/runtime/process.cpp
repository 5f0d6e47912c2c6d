// Process-wide tuning that belongs to the program: the library never calls
// these itself (a library embedded in someone else's program must not
// restart it or change its allocator); capsnet's tool does.
#include "capsnet/runtime/process.h"

#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

// Present when OpenBLAS is the process's BLAS (Debian: libblas.so.3 alternative).
extern "C" char* openblas_get_corename() __attribute__((weak));

namespace capsnet {

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
  // AVX-512 (Skylake-SP's subset) unless ATen is held to AVX2 or below: on a
  // 2-core Sapphire Rapids, SkylakeX's sgemm ran the 2048^3 probe at 203-211
  // GFLOP/s against Haswell's 127, and training 1.23x faster.
  const char* aten = std::getenv("ATEN_CPU_CAPABILITY");
  const bool held = aten && (strcasecmp(aten, "avx2") == 0 || strcasecmp(aten, "default") == 0);
  const bool avx512 = !held && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd");
  const char* chosen = avx512 ? "SkylakeX" : "Haswell";
  std::fprintf(stderr,
               "capsnet: OpenBLAS picked its generic '%s' kernel on this %s CPU; restarting "
               "with OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE to choose yourself)\n",
               core, avx512 ? "AVX-512" : "AVX2", chosen);
  setenv("OPENBLAS_CORETYPE", chosen, 1);
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

namespace {

// The handler's state: plain atomics, all it may touch.
std::atomic<bool> g_stop{false};
std::atomic<int> g_first_signal{0};
std::atomic<int> g_pending{0};
std::atomic<int64_t> g_first_signal_ms{0};
std::atomic<bool> g_forward{false};
std::atomic<bool> g_installed{false};

int64_t monotonic_ms() { // async-signal-safe
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

void on_stop_signal(int signal) {
  g_pending = signal;
  if (g_stop.exchange(true)) {
    if (g_forward || monotonic_ms() - g_first_signal_ms.load() < 1000) return;
    std::signal(signal, SIG_DFL); // a second signal: stop now, without the checkpoint
    std::raise(signal);
    return;
  }
  g_first_signal_ms = monotonic_ms();
  g_first_signal = signal;
}

void set_action(void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  action.sa_flags = SA_RESTART; // the threads of a server or a reader carry on
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

} // namespace

StopSignals::StopSignals(Repeat repeat) {
  if (g_installed.exchange(true)) std::abort(); // one instance at a time
  g_stop = false;
  g_first_signal = 0;
  g_pending = 0;
  g_forward = repeat == Repeat::kForward;
  set_action(on_stop_signal);
}

StopSignals::~StopSignals() {
  set_action(SIG_DFL);
  g_installed = false;
}

const std::atomic<bool>& StopSignals::stop() const { return g_stop; }

int StopSignals::signal() const { return g_first_signal; }

int StopSignals::exit_code() const { return 128 + (g_first_signal ? g_first_signal.load() : SIGINT); }

int StopSignals::take() { return g_pending.exchange(0); }

const char* StopSignals::name(int signal) { return signal == SIGTERM ? "SIGTERM" : "SIGINT"; }

} // namespace capsnet
