#include "commands.h"

#include "capsnet/engine/flops.h"
#include "capsnet/engine/options.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/io/atomic_file.h"

#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/grad_mode.h>
// The legacy profiler's RecordProfile (a Chrome trace of one step) is in
// LibTorch 1.13 and, as far as we know, in 2.x; --trace says so where a
// LibTorch lacks it.
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define CAPSNET_HAVE_RECORD_PROFILE 1
#endif
#include <torch/optim/adam.h>
#include <torch/cuda.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

namespace capsnet::cli {

namespace {

struct BenchFlags {
  int64_t batch_size = 128;
  int64_t steps = 5;
  int64_t warmup = 1;
  RoutingImpl routing = RoutingImpl::kFused;
  ConvAlgo conv = ConvAlgo::kAuto;
  std::string trace;
  ComputeFlags compute{Precision::kFp32, "cpu"}; // the CPU unless asked: the baseline script's default
  bool json = false;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0; // KiB on Linux
}

// GFLOP/s of a large matrix product of `dtype` (fp32: the BLAS; bf16: oneDNN),
// best of five timings.
double matmul_probe_gflops(at::ScalarType dtype, const c10::Device& device) {
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  auto a = at::randn({n, n}).to(device, dtype), b = at::randn({n, n}).to(device, dtype);
  auto c = at::empty({n, n}, a.options());
  at::mm_out(c, a, b); // warm up
  if (device.is_cuda()) torch::cuda::synchronize();
  // The best of five timings: the machine's limit, not its noise.
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const auto start = std::chrono::steady_clock::now();
    const int reps = dtype == at::kFloat && !device.is_cuda() ? 2 : 6;
    for (int k = 0; k < reps; ++k) at::mm_out(c, a, b);
    if (device.is_cuda()) torch::cuda::synchronize();
    best = std::max(best, reps * 2.0 * n * n * n / seconds_since(start) / 1e9);
  }
  return best;
}

} // namespace

Runner add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time training and inference steps of the paper's "
                                          "CapsNet on random data; per-stage breakdown");
  auto flags = std::make_shared<BenchFlags>();
  cmd->add_option("--batch-size", flags->batch_size, "images per step")
      ->check(CLI::Range(int64_t(1), int64_t(65536)))
      ->capture_default_str();
  cmd->add_option("--steps", flags->steps, "timed steps")->check(CLI::Range(int64_t(1), int64_t(100000)))->capture_default_str();
  cmd->add_option("--warmup", flags->warmup, "untimed steps first")
      ->check(CLI::Range(int64_t(0), int64_t(100000)))
      ->capture_default_str();
  add_routing_option(cmd, flags->routing);
  add_enum_option(cmd, "--conv", flags->conv,
                  "fp32 primary-capsule convolution on the CPU: auto (the rule in "
                  "conv_algo_for), im2col (im2col + BLAS sgemm), onednn (LibTorch's own) or "
                  "mixed (oneDNN forward, im2col + sgemm backward)");
  flags->compute.add_to(cmd);
  cmd->add_option("--trace", flags->trace,
                  "write a Chrome trace (chrome://tracing) of one more training step, op by op");
  cmd->add_flag("--json", flags->json, "print one JSON object instead of text");

  return [flags]() {
#ifndef CAPSNET_HAVE_RECORD_PROFILE
    if (!flags->trace.empty()) {
      throw std::invalid_argument("--trace needs LibTorch's legacy profiler "
                                  "(torch/csrc/autograd/profiler_legacy.h), which this "
                                  "LibTorch lacks");
    }
#endif
    // Threads first: everything after runs as it will be timed.
    const auto chosen = flags->compute.resolve(); // (lambdas below capture these)
    TrainOptions options; // the paper's defaults
    const auto objective = options.objective();
    torch::manual_seed(0);
    CapsNet model(options.model);
    model->set_routing_impl(flags->routing);
    const ConvAlgo conv_algo = conv_algo_for(flags->conv);
    model->set_conv_algo(conv_algo);
    model->to(chosen.first);
    model->set_precision(chosen.second);
    const int threads = at::get_num_threads();
    const c10::Device device = chosen.first;
    const Precision precision = chosen.second;
    auto bf16 = cpu_bf16_support();
    if (device.is_cuda()) bf16 = {true, "CUDA", ""};
    torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(options.lr));
    const int64_t B = flags->batch_size;
    auto images = at::rand({B, 1, options.model.image_size, options.model.image_size}).to(device);
    auto labels = at::randint(options.model.num_classes, {B}, at::kLong).to(device);
    auto sync = [&] {
      if (device.is_cuda()) torch::cuda::synchronize();
    };

    // Training steps, forward stage by stage as CapsNetImpl::forward runs them.
    // On a GPU the stages are timed in steps of their own: timing one waits
    // for the GPU, which the timed steps must not (kernels queue ahead).
    std::map<std::string, double> stage;
    double train_seconds = 0, staged_seconds = 0;
    const int64_t traced = flags->trace.empty() ? 0 : 1;
    const int64_t staged = device.is_cuda() ? flags->steps : 0;
    const int64_t timed_end = flags->warmup + flags->steps;
    std::ostringstream trace; // written atomically once the traced step is done
    for (int64_t step = 0; step < timed_end + staged + traced; ++step) {
      const bool timed = step >= flags->warmup && step < timed_end;
      const bool stages = staged > 0 ? step >= timed_end && step < timed_end + staged : timed;
#ifdef CAPSNET_HAVE_RECORD_PROFILE
      std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
      if (step == timed_end + staged) {
        profile = std::make_unique<torch::autograd::profiler::RecordProfile>(trace);
      }
#endif
      std::map<std::string, double> t;
      auto start = std::chrono::steady_clock::now();
      auto tick = [&](const char* name) {
        sync();
        t[name] += seconds_since(start);
        start = std::chrono::steady_clock::now();
      };
      const auto step_start = std::chrono::steady_clock::now();
      if (stages) model->stage_hook = tick;
      auto out = model->forward(images, labels);
      model->stage_hook = nullptr;
      auto loss = objective(out.lengths, labels, out.reconstruction, images);
      if (stages) tick("losses");
      adam.zero_grad();
      loss.total.backward();
      if (stages) tick("backward");
      adam.step();
      sync();
      if (stages) tick("optimizer");
      if (timed) train_seconds += seconds_since(step_start);
      if (stages) {
        staged_seconds += seconds_since(step_start);
        for (auto& [name, seconds] : t) stage[name] += seconds;
      }
    }

    if (!flags->trace.empty()) {
      write_file_atomically(flags->trace, trace.str());
      std::cerr << "trace of one training step written to " << flags->trace << "\n";
    }

    double infer_seconds = 0;
    {
      torch::NoGradGuard no_grad;
      model->eval();
      for (int64_t step = 0; step < flags->warmup + flags->steps; ++step) {
        const auto start = std::chrono::steady_clock::now();
        model->forward(images, {}, /*with_reconstruction=*/false).predictions.sum().item<int64_t>();
        if (step >= flags->warmup) infer_seconds += seconds_since(start);
      }
    }

    const auto flops = model_flops(options.model);
    const double train_rate = flags->steps * B / train_seconds;
    const double infer_rate = flags->steps * B / infer_seconds;
    const double train_gflops = train_rate * flops.training() / 1e9;
    const double infer_gflops = infer_rate * flops.forward() / 1e9;
    const double probe_fp32 = matmul_probe_gflops(at::kFloat, device);
    const double probe_bf16 = bf16.available ? matmul_probe_gflops(at::kBFloat16, device) : 0.0;
    // The limit that applies: 95% of the FLOPs are the primary-capsule convolution.
    const double probe = precision == Precision::kBf16 ? probe_bf16 : probe_fp32;
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    const std::string blas_core = blas_core_name();
    const auto& cpu = cpu_features();
    // The paths the primary-capsule convolution and the routing took.
    std::string conv_path, routing_path;
    if (device.is_cuda()) {
      conv_path = precision == Precision::kBf16 ? "cuDNN bf16" : "cuDNN fp32";
      routing_path = flags->routing == RoutingImpl::kFused ? "fused, CUDA kernels" : "reference (ATen)";
    } else {
      conv_path = precision == Precision::kBf16
                      ? "im2col + bf16 GEMM (oneDNN, " + bf16.isa + ")"
                  : conv_algo == ConvAlgo::kIm2col
                      ? "im2col + sgemm (OpenBLAS " + blas_core + ")"
                  : conv_algo == ConvAlgo::kMixed
                      ? "oneDNN forward, im2col + sgemm backward (OpenBLAS " + blas_core + ")"
                      : "oneDNN convolution";
      routing_path = flags->routing == RoutingImpl::kFused
                         ? "fused, capsnet's " + enum_name(kernel_isa()) + " kernels"
                         : "reference (ATen)";
    }

    nlohmann::json result = {
        {"batch_size", B},
        {"steps", flags->steps},
        {"threads", threads},
        {"routing", flags->routing},
        {"precision", enum_name(precision)},
        {"device", device.str()},
        {"cpu_model", cpu.model},
        {"cpu_isa", cpu.isa()},
        {"cpu", cpu.describe()},
        {"kernel_isa", enum_name(kernel_isa())},
        {"conv_path", conv_path},
        {"routing_path", routing_path},
        {"cpu_bf16", bf16.available ? bf16.isa : "none"},
        {"bf16_unavailable_reason", bf16.why_not},
        {"libtorch_version", TORCH_VERSION},
        {"blas_core", blas_core},
        {"openblas_coretype_env", coretype ? coretype : ""},
        {"train_images_per_second", train_rate},
        {"inference_images_per_second", infer_rate},
        {"train_gflop_per_image", flops.training() / 1e9},
        {"forward_gflop_per_image", flops.forward() / 1e9},
        {"train_gflops", train_gflops},
        {"inference_gflops", infer_gflops},
        {"matmul_probe_gflops", probe_fp32},
        {"bf16_matmul_probe_gflops", bf16.available ? nlohmann::json(probe_bf16) : nullptr},
        {"train_fraction_of_probe", probe > 0 ? nlohmann::json(train_gflops / probe) : nullptr},
        {"peak_rss_mib", peak_rss_mib()},
        {"train_ms_per_step", 1000 * train_seconds / flags->steps},
        {"stage_seconds_per_step", nlohmann::json::object()}};
    for (auto& [name, seconds] : stage) {
      result["stage_seconds_per_step"][name] = seconds / flags->steps;
    }
    if (flags->json) {
      std::cout << result.dump() << std::endl;
      return 0;
    }
    std::printf("capsnet bench: batch %ld, %ld steps after %ld warm-up, %d threads, %s routing, "
                "%s\n",
                static_cast<long>(B), static_cast<long>(flags->steps),
                static_cast<long>(flags->warmup), threads, enum_name(flags->routing).c_str(),
                enum_name(precision).c_str());
    std::printf("CPU: %s; capsnet kernels %s\n", cpu.describe().c_str(),
                enum_name(kernel_isa()).c_str());
    std::printf("BLAS core %s (OPENBLAS_CORETYPE=%s), LibTorch %s\n", blas_core.c_str(),
                coretype ? coretype : "unset", TORCH_VERSION);
    std::printf("primary-capsule convolution: %s; routing: %s\n", conv_path.c_str(),
                routing_path.c_str());
    std::printf("training   %8.1f images/s  %6.1f GFLOP/s (%.3f GFLOP/image)\n", train_rate,
                train_gflops, flops.training() / 1e9);
    std::printf("inference  %8.1f images/s  %6.1f GFLOP/s (%.3f GFLOP/image)\n", infer_rate,
                infer_gflops, flops.forward() / 1e9);
    std::printf("matrix-product probe: fp32 %.1f GFLOP/s, bf16 %s\n", probe_fp32,
                bf16.available ? (std::to_string(static_cast<int>(probe_bf16)) + " GFLOP/s (" +
                                  bf16.isa + ")").c_str()
                               : ("unavailable: " + bf16.why_not).c_str());
    std::printf("training runs at %.0f%% of the %s probe\n", 100 * train_gflops / probe,
                enum_name(precision).c_str());
    std::printf("peak resident memory %.0f MiB\n", peak_rss_mib());
    std::printf("training step, seconds per stage:\n");
    for (auto& [name, seconds] : stage) {
      std::printf("  %-20s %7.3f  (%4.1f%%)\n", name.c_str(), seconds / flags->steps,
                  100 * seconds / staged_seconds);
    }
    return 0;
  };
}

} // namespace capsnet::cli
