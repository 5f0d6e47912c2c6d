#include "commands.h"

#include "capsnet/engine/graph.h"
#include "capsnet/recipes/bench.h"
#include "capsnet/registry/models.h"

#include <iostream>
#include <memory>
#include <tuple>

namespace capsnet::cli {

namespace {

struct BenchFlags {
  BenchOptions bench;
  ComputeFlags compute{Precision::kFp32, "cpu"}; // the CPU unless asked: the baseline script's default
  bool json = false;
  CudaGraphMode graph = CudaGraphMode::kOff;
};

} // namespace

Runner add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time training and inference steps of the paper's "
                                          "CapsNet (or Efficient-CapsNet) on random data; "
                                          "per-stage breakdown");
  auto flags = std::make_shared<BenchFlags>();
  auto& bench = flags->bench;
  cmd->add_option("--model", bench.model,
                  "the network, one of the registered models with a bench recipe, timed with "
                  "that recipe's objective on 28x28 digits")
      ->check(CLI::IsMember(bench_models()))
      ->capture_default_str();
  cmd->add_option("--batch-size", bench.batch_size, "images per step")
      ->check(CLI::Range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  cmd->add_option("--steps", bench.steps, "timed steps")
      ->check(CLI::Range(int64_t(1), int64_t(100000)))
      ->capture_default_str();
  cmd->add_option("--warmup", bench.warmup, "untimed steps first")
      ->check(CLI::Range(int64_t(0), int64_t(100000)))
      ->capture_default_str();
  add_routing_option(cmd, bench.routing);
  add_enum_option(cmd, "--conv", bench.conv,
                  "fp32 primary-capsule convolution on the CPU: auto (the rule in conv_algo_for: "
                  "winograd in training, oneDNN's forward in inference), im2col (im2col + BLAS "
                  "sgemm), onednn (LibTorch's own), mixed (oneDNN forward, im2col + sgemm "
                  "backward) or winograd (F(2x2, 5x5) on the phases of the stride-2 convolution)");
  flags->compute.add_to(cmd);
  cmd->add_option("--trace", bench.trace,
                  "write a Chrome trace (chrome://tracing) of one more training step, op by op");
  cmd->add_flag("--json", flags->json, "print one JSON object instead of text");
  add_enum_option(cmd, "--cuda-graph", flags->graph, "time steps replayed from a CUDA graph");

  return [flags]() {
    BenchOptions options = flags->bench;
    // Threads first: everything after runs as it will be timed.
    std::tie(options.device, options.precision) = flags->compute.resolve();
    options.cuda_graph = use_cuda_graph(flags->graph, options.device, 1);
    const auto result = run_bench(options, &std::cerr);
    if (flags->json) {
      std::cout << bench_json(result).dump() << std::endl;
    } else {
      std::cout << bench_text(result) << std::flush;
    }
    return 0;
  };
}

} // namespace capsnet::cli
