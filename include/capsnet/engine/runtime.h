#pragma once

namespace capsnet {

/// Prepares the process for training or inference on the CPU:
/// - sets LibTorch's intra-op thread count (0: every core; Debian's LibTorch
///   defaults to one);
/// - keeps freed memory in glibc's heap instead of returning it to the kernel.
///   Routing allocates tensors of ~100 MB per step; served by fresh mmaps, every
///   page faults on first touch, which measured ~2.5x slower steps on this
///   network (docs in README, "Performance").
/// Returns the thread count in use.
int configure_runtime(int threads);

} // namespace capsnet
