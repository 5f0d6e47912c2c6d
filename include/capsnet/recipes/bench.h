#pragma once

// The bench measurement (`capsnet bench`): training and inference steps of
// the paper's CapsNet on one random batch, timed stage by stage, beside a
// matrix-product probe of what the machine can do. Measuring is run_bench;
// bench_json and bench_text render its result.

#include "capsnet/registry/flops.h"
#include "capsnet/ops/cpu_features.h"
#include "capsnet/ops/fused_routing.h"
#include "capsnet/ops/im2col_conv.h"

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>

namespace capsnet {

/// What run_bench times: the network, the batch, the steps, the device and the precision.
struct BenchOptions {
  /// The network: a registered model with a bench recipe (ModelInfo::bench_options,
  /// bench_models()), timed with that recipe's options on MNIST's 28x28 digits.
  std::string model = "capsnet";
  int64_t batch_size = 128; ///< images per step
  int64_t steps = 5;        ///< timed steps
  int64_t warmup = 1;       ///< untimed steps first
  RoutingImpl routing = RoutingImpl::kFused; ///< the digit capsules' routing implementation
  ConvAlgo conv = ConvAlgo::kAuto; ///< fp32 primary-capsule convolution on the CPU
  c10::Device device = c10::Device(c10::kCPU); ///< where the steps run
  /// Usable on `device` (usable_precision): run_bench does not fall back.
  Precision precision = Precision::kFp32;
  /// A Chrome trace (chrome://tracing) of one more training step, op by op,
  /// is written here; empty: none.
  std::string trace;
  /// Time training steps as a captured CUDA graph (engine/graph.h): 3 eager
  /// warm-up steps and the capture come before the timed ones, and there is
  /// no stage table or trace (a replay is one launch).
  bool cuda_graph = false;
};

/// What run_bench measured, with the settings and the machine it ran on.
struct BenchResult {
  BenchOptions options; ///< as run
  int threads = 0;      ///< LibTorch's intra-op threads
  /// What conv_algo_for chose for the primary capsules in training.
  ConvAlgo conv_algo = ConvAlgo::kAuto;
  CpuFeatures cpu; ///< the CPU's model and instruction sets (cpu_features())
  KernelIsa kernel_isa = KernelIsa::kBaseline; ///< what capsnet's CPU kernels use (kernel_isa())
  Bf16Support bf16; ///< the CPU's, or {true, "CUDA"} on a GPU
  std::string blas_core; ///< OpenBLAS's kernel family (blas_core_name())
  std::optional<std::string> openblas_coretype; ///< the environment's, if set
  /// The paths the primary-capsule convolution and the routing took.
  std::string conv_path, routing_path; ///< the routing's: fused (which kernels) or reference
  ModelFlops flops; ///< of one image

  /// Seconds of the timed training steps, summed over options.steps.
  double train_seconds = 0, inference_seconds = 0; ///< of the timed inference steps, likewise
  /// The median of the timed inference steps' seconds: one batch's latency
  /// (with --batch-size 1, what one picture costs serve and predict).
  double inference_p50_seconds = 0;
  /// Training steps per stage: the forward stages as CapsNetImpl::forward
  /// runs them, then "losses", "backward" and "optimizer". On a GPU they are
  /// timed in steps of their own (timing a stage waits for the GPU).
  std::map<std::string, double> stage_seconds;
  double staged_seconds = 0; ///< the whole of the steps the stages were timed in

  /// GFLOP/s of a large matrix product (best of five): fp32 (the BLAS), bf16
  /// (oneDNN; 0 when bf16 is unavailable).
  double probe_fp32_gflops = 0, probe_bf16_gflops = 0; ///< the bf16 probe's; 0 without bf16
  double peak_rss_mib = 0; ///< of the process, after the measurement

  /// Images per second of the timed training steps.
  double train_images_per_second() const;
  /// Images per second of the timed inference steps.
  double inference_images_per_second() const;
  /// GFLOP/s of training: its image rate times flops.training().
  double train_gflops() const;
  /// GFLOP/s of inference: its image rate times flops.forward().
  double inference_gflops() const;
  /// The probe of options.precision: the limit that applies (95% of the
  /// FLOPs are the primary-capsule convolution).
  double probe_gflops() const;
};

/// Times options.warmup + options.steps training steps (Adam, the paper's
/// objective) and as many inference steps of the paper's CapsNet on one
/// random batch of 28x28 images on options.device, then the probes. The
/// caller sets the thread count first (set_thread_count): everything here
/// runs as it is timed. `log` (may be null) hears where the trace went.
/// Throws std::invalid_argument for a trace where LibTorch lacks the legacy
/// profiler.
BenchResult run_bench(const BenchOptions& options, std::ostream* log = nullptr);

/// One JSON object: the settings, the machine, the rates, the probes and
/// "stage_seconds_per_step" (what `capsnet bench --json` prints).
nlohmann::json bench_json(const BenchResult& result);
/// The terminal report, lines ending in '\n' (what `capsnet bench` prints).
std::string bench_text(const BenchResult& result);

} // namespace capsnet
