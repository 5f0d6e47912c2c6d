#include "capsnet/engine/adam.h"
#include "capsnet/engine/graph.h"
#include "capsnet/recipes/bench.h"

#include "capsnet/registry/options.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/registry/models.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>
// The legacy profiler's RecordProfile (a Chrome trace of one step) is in
// LibTorch 1.13 and, as far as we know, in 2.x; a trace says so where a
// LibTorch lacks it.
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define CAPSNET_HAVE_RECORD_PROFILE 1
#endif
#include <torch/cuda.h>
#include <torch/optim/adam.h>
#include <torch/version.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace capsnet {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0; // KiB on Linux
}

void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// GFLOP/s of a large matrix product of `dtype` (fp32: the BLAS; bf16: oneDNN),
// best of five timings.
double matmul_probe_gflops(at::ScalarType dtype, const c10::Device& device) {
  const int64_t n = device.is_cuda() ? 8192 : 2048;
  auto a = at::randn({n, n}).to(device, dtype), b = at::randn({n, n}).to(device, dtype);
  auto c = at::empty({n, n}, a.options());
  at::mm_out(c, a, b); // warm up
  sync(device);
  // The best of five timings: the machine's limit, not its noise.
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const auto start = Clock::now();
    const int reps = dtype == at::kFloat && !device.is_cuda() ? 2 : 6;
    for (int k = 0; k < reps; ++k) at::mm_out(c, a, b);
    sync(device);
    best = std::max(best, reps * 2.0 * n * n * n / seconds_since(start) / 1e9);
  }
  return best;
}

// What the steps run: the network with its preset's objective and the
// optimiser on one random batch.
struct Workload {
  TrainOptions options; // the paper's defaults, or Efficient-CapsNet's preset
  CapsuleNetworkPtr model;
  std::unique_ptr<Adam> adam;
  at::Tensor images, labels;
};

Workload make_workload(const BenchOptions& options, ConvAlgo conv_algo) {
  Workload w;
  torch::manual_seed(0);
  const auto& entry = model_info(options.model);
  if (!entry.bench_options) {
    std::string known;
    for (const auto& name : bench_models()) known += (known.empty() ? "" : ", ") + name;
    throw std::invalid_argument("bench: model '" + options.model + "' has no bench recipe; " +
                                "bench times " + known);
  }
  const DataShape mnist; // 28x28 grey digits of 10 classes
  w.options = fitted_to(entry.bench_options(), mnist);
  w.model = std::dynamic_pointer_cast<CapsuleNetworkImpl>(entry.build(mnist, w.options));
  TORCH_INTERNAL_ASSERT(w.model, "bench: model '", options.model, "' is not a CapsuleNetwork");
  w.model->set_conv_algo(conv_algo);
  w.model->set_routing_impl(options.routing);
  w.model->to(options.device);
  w.model->set_precision(options.precision);
  w.adam = std::make_unique<Adam>(w.model->parameters(), torch::optim::AdamOptions(w.options.lr));
  const auto sizes = w.model->shape();
  const int64_t side = sizes.image_size;
  w.images = at::rand({options.batch_size, 1, side, side}).to(options.device);
  w.labels = at::randint(sizes.num_classes, {options.batch_size}, at::kLong)
                 .to(options.device);
  return w;
}

struct StepTiming {
  double seconds = 0;
  std::map<std::string, double> stages; ///< empty unless asked for
};

// One training step; with `stages`, each stage is timed (waiting for the GPU),
// forward and backward: a hook on a stage's output gradient marks where its
// backward begins, and the losses' backward runs from the start of backward()
// to the first such hook.
StepTiming training_step(Workload& w, const c10::Device& device, bool stages) {
  StepTiming timing;
  // The stages share their boundaries (one clock reading ends a stage and
  // begins the next) and the first begins with the step, so they add up to no
  // more than the step: a stage clock started before the step's had made their
  // sum exceed it by 54 us in CI.
  const auto step_start = Clock::now();
  auto start = step_start;
  auto tick = [&](const std::string& name) {
    sync(device);
    const auto now = Clock::now();
    timing.stages[name] += std::chrono::duration<double>(now - start).count();
    start = now;
  };
  std::string in_backward = "losses (backward)";
  if (stages) {
    w.model->stage_hook = [&](const char* name, const at::Tensor& output) {
      tick(name);
      if (!output.requires_grad()) return;
      output.register_hook([&, stage = std::string(name)](const at::Tensor& grad) {
        tick(in_backward);
        in_backward = stage + " (backward)";
        return grad;
      });
    };
  }
  auto out = w.model->forward(w.images, w.labels);
  w.model->stage_hook = nullptr;
  auto loss = w.options.objective()(out.lengths, w.labels, out.reconstruction, w.images);
  if (stages) tick("losses");
  w.adam->zero_grad();
  loss.total.backward();
  if (stages) tick(in_backward);
  w.adam->step();
  sync(device);
  if (stages) tick("optimizer");
  timing.seconds = seconds_since(step_start);
  return timing;
}

// The training step as a captured graph: warm-up and capture, then timed replays.
void time_graphed_training(Workload& w, const BenchOptions& options, BenchResult& result) {
  const auto params = w.model->parameters();
  GraphedStep step(make_cuda_graph(options.device), *w.adam, [&w, params] {
    zero_grads(params);
    const auto out = w.model->forward(w.images, w.labels);
    w.options.objective()(out.lengths, w.labels, out.reconstruction, w.images).total.backward();
    w.adam->update();
  });
  const int64_t warmup = std::max<int64_t>(options.warmup, 4); // 3 eager, the capture
  for (int64_t k = 0; k < warmup + options.steps; ++k) {
    const auto start = Clock::now();
    step.run();
    sync(options.device);
    if (k >= warmup) result.train_seconds += seconds_since(start);
  }
}

// Warm-up, timed, staged (a GPU's: steps of their own) and traced steps, in
// that order. Returns the trace (empty unless asked for).
std::string time_training(Workload& w, const BenchOptions& options, BenchResult& result) {
  if (options.cuda_graph) {
    time_graphed_training(w, options, result);
    return "";
  }
  const int64_t traced = options.trace.empty() ? 0 : 1;
  const int64_t staged = options.device.is_cuda() ? options.steps : 0;
  const int64_t timed_end = options.warmup + options.steps;
  std::ostringstream trace; // complete once the traced step's profile is gone
  for (int64_t step = 0; step < timed_end + staged + traced; ++step) {
    const bool timed = step >= options.warmup && step < timed_end;
    const bool stages = staged > 0 ? step >= timed_end && step < timed_end + staged : timed;
#ifdef CAPSNET_HAVE_RECORD_PROFILE
    std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
    if (step == timed_end + staged) {
      profile = std::make_unique<torch::autograd::profiler::RecordProfile>(trace);
    }
#endif
    const auto timing = training_step(w, options.device, stages);
    if (timed) result.train_seconds += timing.seconds;
    if (stages) {
      result.staged_seconds += timing.seconds;
      for (const auto& [name, seconds] : timing.stages) result.stage_seconds[name] += seconds;
    }
  }
  return trace.str();
}

// The timed inference steps' total seconds and median (one batch's latency).
std::pair<double, double> time_inference(Workload& w, const BenchOptions& options) {
  torch::NoGradGuard no_grad;
  w.model->eval();
  std::vector<double> seconds;
  for (int64_t step = 0; step < options.warmup + options.steps; ++step) {
    const auto start = Clock::now();
    w.model->forward(w.images, {}, /*with_reconstruction=*/false).predictions.sum().item<int64_t>();
    if (step >= options.warmup) seconds.push_back(seconds_since(start));
  }
  const double total = std::accumulate(seconds.begin(), seconds.end(), 0.0);
  const auto middle = seconds.begin() + static_cast<std::ptrdiff_t>(seconds.size() / 2);
  std::nth_element(seconds.begin(), middle, seconds.end());
  return {total, seconds.empty() ? 0.0 : *middle};
}

// The machine, the libraries, and the paths the primary-capsule convolution
// and the routing take there.
void describe_machine(BenchResult& r) {
  const auto& o = r.options;
  r.threads = at::get_num_threads();
  const CapsNetConfig paper; // bench's CapsNet: the paper's shapes
  // conv1 (stride 1) is not Winograd's: conv2d_fp32 gives it kAuto's choice.
  // The primary capsules' is on the CPU; auto takes it in training only.
  const int64_t side = paper.image_size - paper.conv1_kernel + 1;
  const bool covered = !o.device.is_cuda() &&
                       winograd_covers(side, side, paper.primary_kernel, paper.primary_stride);
  r.conv_algo = conv_algo_for(o.conv, paper.conv1_channels, covered, /*backward=*/true);
  const auto inference_algo = conv_algo_for(o.conv, paper.conv1_channels, covered, false);
  const auto conv1_algo = conv_algo_for(o.conv, paper.in_channels);
  r.cpu = cpu_features();
  r.kernel_isa = kernel_isa();
  r.bf16 = o.device.is_cuda() ? Bf16Support{true, "CUDA", "", ""} : cpu_bf16_support();
  r.blas_core = blas_core_name();
  if (const char* coretype = std::getenv("OPENBLAS_CORETYPE")) r.openblas_coretype = coretype;
  const bool bf16 = o.precision == Precision::kBf16, fused = o.routing == RoutingImpl::kFused;
  if (o.device.is_cuda()) {
    r.conv_path = bf16 ? "cuDNN bf16" : "cuDNN fp32";
    r.routing_path = fused ? "fused, CUDA kernels" : "reference (ATen)";
    return;
  }
  const std::string blas = "(OpenBLAS " + r.blas_core + ")";
  r.conv_path = bf16                               ? "im2col + bf16 GEMM (oneDNN, " + r.bf16.isa + ")"
                : r.conv_algo == ConvAlgo::kIm2col ? "im2col + sgemm " + blas
                : r.conv_algo == ConvAlgo::kMixed  ? "oneDNN forward, im2col + sgemm backward " + blas
                : r.conv_algo == ConvAlgo::kWinograd
                    ? "Winograd F(2x2, 5x5) on the four phases + sgemm " + blas
                    : "oneDNN convolution";
  if (!bf16 && inference_algo != r.conv_algo) {
    r.conv_path += " in training, oneDNN forward in inference";
  }
  if (!bf16 && conv1_algo != r.conv_algo) {
    r.conv_path += conv1_algo == ConvAlgo::kIm2col ? "; conv1 (one input channel): im2col + sgemm"
                                                   : "; conv1: " + enum_name(conv1_algo);
  }
  r.routing_path = fused ? "fused, capsnet's " + enum_name(r.kernel_isa) + " kernels"
                         : "reference (ATen)";
}

std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* pattern, ...) {
  va_list args, again;
  va_start(args, pattern);
  va_copy(again, args);
  std::string text(std::vsnprintf(nullptr, 0, pattern, args), '\0');
  std::vsnprintf(text.data(), text.size() + 1, pattern, again);
  va_end(again);
  va_end(args);
  return text;
}

} // namespace

double BenchResult::train_images_per_second() const {
  return options.steps * options.batch_size / train_seconds;
}
double BenchResult::inference_images_per_second() const {
  return options.steps * options.batch_size / inference_seconds;
}
double BenchResult::train_gflops() const { return train_images_per_second() * flops.training() / 1e9; }
double BenchResult::inference_gflops() const {
  return inference_images_per_second() * flops.forward() / 1e9;
}
double BenchResult::probe_gflops() const {
  return options.precision == Precision::kBf16 ? probe_bf16_gflops : probe_fp32_gflops;
}

BenchResult run_bench(const BenchOptions& options, std::ostream* log) {
#ifndef CAPSNET_HAVE_RECORD_PROFILE
  if (!options.trace.empty()) {
    throw std::invalid_argument("--trace needs LibTorch's legacy profiler "
                                "(torch/csrc/autograd/profiler_legacy.h), which this "
                                "LibTorch lacks");
  }
#endif
  BenchResult result;
  result.options = options;
  describe_machine(result);
  // The request, not describe_machine()'s resolution: auto resolves per call
  // (Winograd in training, oneDNN's forward in inference).
  auto workload = make_workload(options, options.conv);
  const auto trace = time_training(workload, options, result);
  if (!options.trace.empty()) {
    write_file_atomically(options.trace, trace);
    if (log) *log << "trace of one training step written to " << options.trace << "\n";
  }
  std::tie(result.inference_seconds, result.inference_p50_seconds) =
      time_inference(workload, options);
  const auto& entry = model_info(options.model);
  if (entry.flops) result.flops = entry.flops(workload.options);
  result.probe_fp32_gflops = matmul_probe_gflops(at::kFloat, options.device);
  if (result.bf16.available) {
    result.probe_bf16_gflops = matmul_probe_gflops(at::kBFloat16, options.device);
  }
  result.peak_rss_mib = peak_rss_mib();
  return result;
}

nlohmann::json bench_json(const BenchResult& r) {
  const auto& o = r.options;
  const double probe = r.probe_gflops();
  nlohmann::json j = {
      {"model", o.model},
      {"batch_size", o.batch_size},
      {"steps", o.steps},
      {"threads", r.threads},
      {"routing", o.routing},
      {"precision", enum_name(o.precision)},
      {"device", o.device.str()},
      {"cuda_graph", o.cuda_graph},
      {"cpu_model", r.cpu.model},
      {"cpu_isa", r.cpu.isa()},
      {"cpu", r.cpu.describe()},
      {"kernel_isa", enum_name(r.kernel_isa)},
      {"conv_path", r.conv_path},
      {"routing_path", r.routing_path},
      {"cpu_bf16", r.bf16.available ? r.bf16.isa : "none"},
      {"bf16_unavailable_reason", r.bf16.why_not},
      {"bf16_not_faster_reason", r.bf16.not_faster},
      {"libtorch_version", TORCH_VERSION},
      {"blas_core", r.blas_core},
      {"openblas_coretype_env", r.openblas_coretype.value_or("")},
      {"train_images_per_second", r.train_images_per_second()},
      {"inference_images_per_second", r.inference_images_per_second()},
      {"train_gflop_per_image", r.flops.training() / 1e9},
      {"forward_gflop_per_image", r.flops.forward() / 1e9},
      {"train_gflops", r.train_gflops()},
      {"inference_gflops", r.inference_gflops()},
      {"inference_p50_ms", 1000 * r.inference_p50_seconds},
      {"matmul_probe_gflops", r.probe_fp32_gflops},
      {"bf16_matmul_probe_gflops",
       r.bf16.available ? nlohmann::json(r.probe_bf16_gflops) : nullptr},
      {"train_fraction_of_probe", probe > 0 ? nlohmann::json(r.train_gflops() / probe) : nullptr},
      {"peak_rss_mib", r.peak_rss_mib},
      {"train_ms_per_step", 1000 * r.train_seconds / o.steps},
      {"stage_seconds_per_step", nlohmann::json::object()}};
  for (const auto& [name, seconds] : r.stage_seconds) {
    j["stage_seconds_per_step"][name] = seconds / o.steps;
  }
  return j;
}

std::string bench_text(const BenchResult& r) {
  const auto& o = r.options;
  const std::string precision = enum_name(o.precision);
  const std::string bf16 = r.bf16.available ? std::to_string(static_cast<int>(r.probe_bf16_gflops)) +
                                                  " GFLOP/s (" + r.bf16.isa + ")"
                                            : "unavailable: " + r.bf16.why_not;
  std::string text =
      format("capsnet bench: %s, batch %ld, %ld steps after %ld warm-up, %d threads, %s routing, %s\n",
             o.model.c_str(), static_cast<long>(o.batch_size), static_cast<long>(o.steps),
             static_cast<long>(o.warmup), r.threads, enum_name(o.routing).c_str(), precision.c_str());
  text += format("CPU: %s; capsnet kernels %s\n", r.cpu.describe().c_str(),
                 enum_name(r.kernel_isa).c_str());
  text += format("BLAS core %s (OPENBLAS_CORETYPE=%s), LibTorch %s\n", r.blas_core.c_str(),
                 r.openblas_coretype.value_or("unset").c_str(), TORCH_VERSION);
  text += format("primary-capsule convolution: %s; routing: %s\n", r.conv_path.c_str(),
                 r.routing_path.c_str());
  text += format("training   %8.1f images/s  %6.1f GFLOP/s (%.3f GFLOP/image)\n",
                 r.train_images_per_second(), r.train_gflops(), r.flops.training() / 1e9);
  text += format("inference  %8.1f images/s  %6.1f GFLOP/s (%.3f GFLOP/image), p50 %.2f ms a "
                 "batch\n",
                 r.inference_images_per_second(), r.inference_gflops(), r.flops.forward() / 1e9,
                 1000 * r.inference_p50_seconds);
  text += format("matrix-product probe: fp32 %.1f GFLOP/s, bf16 %s\n", r.probe_fp32_gflops,
                 bf16.c_str());
  if (r.bf16.available && r.probe_bf16_gflops < r.probe_fp32_gflops) {
    text += format("bf16 matrix products run at %.2fx fp32's on this CPU: bf16 will not be faster "
                   "here\n",
                   r.probe_bf16_gflops / r.probe_fp32_gflops);
  }
  text += format("training runs at %.0f%% of the %s probe\n",
                 100 * r.train_gflops() / r.probe_gflops(), precision.c_str());
  text += format("peak resident memory %.0f MiB\n", r.peak_rss_mib);
  text += "training step, seconds per stage:\n";
  for (const auto& [name, seconds] : r.stage_seconds) {
    text += format("  %-29s %7.3f  (%4.1f%%)\n", name.c_str(), seconds / o.steps,
                   100 * seconds / r.staged_seconds);
  }
  return text;
}

} // namespace capsnet
