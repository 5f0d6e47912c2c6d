#pragma once

// What a program (not the library, which never calls these itself) may do to
// its own process: restart with a fast OpenBLAS kernel, keep freed memory in
// glibc's heap, and take SIGINT and SIGTERM as a request to stop. capsnet's
// tool calls all three; a program embedding the library chooses.

#include <atomic>

namespace capsnet {

/// Debian's OpenBLAS 0.3.21 does not recognise recent x86-64 CPUs and falls
/// back to a generic SSE3 kernel (~30 GFLOP/s where AVX2 gives ~190 on 2 cores).
/// OpenBLAS reads OPENBLAS_CORETYPE once, when it loads, so the fix is a
/// restart: when the variable is unset, OpenBLAS runs a generic core and the
/// CPU has AVX2 and FMA, this sets OPENBLAS_CORETYPE=Haswell (SkylakeX where
/// the CPU has AVX-512 and ATEN_CPU_CAPABILITY does not hold ATen below it)
/// and re-executes
/// the program with `argv`. Returns only when nothing needed doing (or the
/// re-exec failed). A user's own OPENBLAS_CORETYPE is always left alone.
void ensure_fast_blas(char** argv);

/// Keeps freed memory in glibc's heap instead of returning it to the kernel.
/// Routing allocates tensors of ~100 MB per step; served by fresh mmaps, every
/// page faults on first touch, which measured ~2.5x slower steps on this
/// network; up to 2 GB of free heap is kept (with 1 GB, bf16 evaluation at
/// batch 1000 re-faulted its heap every batch and ran 2x slower). Docs in
/// docs/performance.md.
void keep_freed_memory();

/// SIGINT and SIGTERM as a request to stop: the one way train, experiment,
/// launch and serve take them. While an instance lives (one at a time), the
/// first signal sets stop() and signal(); the program finishes its step,
/// writes what it must and returns. The destructor restores the default
/// actions.
class StopSignals {
 public:
  /// What a second signal does.
  enum class Repeat {
    /// A second signal a second or more after the first ends the process at
    /// once (the default action). The same Ctrl-C arriving twice within the
    /// second (from the terminal and from a launcher) counts once.
    kKill,
    /// Every signal waits for take() (launch passes each on to its children).
    kForward,
  };
  /// Takes SIGINT and SIGTERM; `repeat` says what a second signal does.
  explicit StopSignals(Repeat repeat = Repeat::kKill);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// Turns true at the first signal; poll it (TrainControl::stop).
  const std::atomic<bool>& stop() const;
  /// The first signal received (0: none).
  int signal() const;
  /// The exit code of a process stopped by it: 128 + signal (SIGINT's if none).
  int exit_code() const;
  /// kForward: the last signal not yet taken, 0 when none.
  int take();
  /// "SIGINT" or "SIGTERM".
  static const char* name(int signal);
};

} // namespace capsnet
