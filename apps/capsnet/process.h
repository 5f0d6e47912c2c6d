#pragma once

namespace capsnet::cli {

/// Debian's OpenBLAS 0.3.21 does not recognise recent x86-64 CPUs and falls
/// back to a generic SSE3 kernel (~30 GFLOP/s where AVX2 gives ~190 on 2 cores).
/// OpenBLAS reads OPENBLAS_CORETYPE once, when it loads, so the fix is a
/// restart: when the variable is unset, OpenBLAS runs a generic core and the
/// CPU has AVX2 and FMA, this sets OPENBLAS_CORETYPE=Haswell and re-executes
/// the program with `argv`. Returns only when nothing needed doing (or the
/// re-exec failed). A user's own OPENBLAS_CORETYPE is always left alone.
void ensure_fast_blas(char** argv);

/// Keeps freed memory in glibc's heap instead of returning it to the kernel.
/// Routing allocates tensors of ~100 MB per step; served by fresh mmaps, every
/// page faults on first touch, which measured ~2.5x slower steps on this
/// network; up to 2 GB of free heap is kept (with 1 GB, bf16 evaluation at
/// batch 1000 re-faulted its heap every batch and ran 2x slower). Docs in
/// README, "Performance".
void keep_freed_memory();

} // namespace capsnet::cli
