// The recipe tier's experiments and bench measurement as library functions:
// what they measure, checked against hand-computed values, and their
// renderings, checked line by line against the formats the command line,
// the scripts and the documents rely on.
#include "capsnet/engine/epoch_record.h"
#include "capsnet/recipes/bench.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/step.h"
#include "capsnet/recipes/errors.h"
#include "capsnet/recipes/experiments.h"
#include "capsnet/image/image.h"
#include "capsnet/io/atomic_file.h"

#include <torch/version.h>

#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace capsnet {
namespace {

namespace fs = std::filesystem;

int64_t count_lines_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0;
  return n;
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(Table1Recipe, HasThePapersFiveRowsOnOneBudget) {
  ExperimentBudget budget;
  budget.batch_size = 32;
  budget.limit = 64;
  budget.test_limit = 16;
  budget.threads = 3;
  budget.precision = Precision::kBf16;
  const auto fresh = experiment_options(budget, /*seed=*/2);
  EXPECT_EQ(fresh.batch_size, 32);
  EXPECT_EQ(fresh.limit, 64);
  EXPECT_EQ(fresh.test_limit, 16);
  EXPECT_EQ(fresh.seed, 2u);
  EXPECT_EQ(fresh.threads, 3);
  EXPECT_EQ(fresh.precision, Precision::kBf16);
  EXPECT_DOUBLE_EQ(fresh.lr_decay, 0.9905); // 0.96 per 2,000 steps of 128, per epoch
  EXPECT_NEAR(std::pow(0.96, 60000.0 / 128 / 2000), 0.9905, 1e-4);

  const auto rows = table1_rows();
  ASSERT_EQ(rows.size(), 5u);
  const std::vector<std::pair<std::string, double>> paper = {
      {"baseline", 0.39}, {"capsnet-r1-norecon", 0.34}, {"capsnet-r1-recon", 0.29},
      {"capsnet-r3-norecon", 0.35}, {"capsnet-r3-recon", 0.25}};
  for (size_t k = 0; k < rows.size(); ++k) {
    EXPECT_EQ(rows[k].name, paper[k].first);
    EXPECT_DOUBLE_EQ(rows[k].paper_error, paper[k].second);
  }
  auto applied = [&](size_t k) {
    TrainOptions o = fresh;
    rows[k].apply(o);
    return o;
  };
  EXPECT_EQ(applied(0).model_name, "baseline-cnn");
  for (size_t k = 1; k < 5; ++k) {
    const auto o = applied(k);
    EXPECT_EQ(o.model_name, "capsnet");
    EXPECT_EQ(o.model.routing_iterations, k <= 2 ? 1 : 3) << rows[k].name;
    EXPECT_EQ(o.recon_weight == 0, k % 2 == 1) << rows[k].name;
  }
  EXPECT_DOUBLE_EQ(applied(4).recon_weight, fresh.recon_weight); // the paper's 0.0005
}

TEST(Table1Recipe, TableGivesTheMeanAndSampleStdOfTheTrials) {
  Table1Result result;
  result.rows = {{"Baseline CNN", 0.39, {0.5, 0.7, 0.9}}, {"CapsNet, one trial", 0.25, {1.25}}};
  result.machine = "a test machine";
  EXPECT_NEAR(result.rows[0].mean(), 0.7, 1e-12);
  EXPECT_NEAR(result.rows[0].std_dev(), 0.2, 1e-12); // sqrt((0.04 + 0 + 0.04) / 2)
  EXPECT_EQ(result.rows[1].std_dev(), 0.0);
  EXPECT_EQ(table1_table(result),
            "| Table 1 row | test error, mean ± std (%) | trials | the paper's (%) |\n"
            "|---|---|---|---|\n"
            "| Baseline CNN | 0.70 ± 0.20 | 3 | 0.39 |\n"
            "| CapsNet, one trial | 1.25 ± 0.00 | 1 | 0.25 |\n");
  Table1Options options;
  options.trials = 3;
  options.budget.epochs = 2;
  options.budget.batch_size = 32;
  options.budget.limit = 64;
  const auto report = table1_report(options, result);
  EXPECT_EQ(report.rfind("# Table 1, reproduced\n\nBudget: 2 epochs, batch 32, 64 training "
                         "images, all 10,000 test images; Adam at 0.001",
                         0),
            0u)
      << report;
  EXPECT_NE(report.find("seeds 1-3; CapsNet's primary-capsule convolution in fp32."),
            std::string::npos);
  EXPECT_NE(report.find("\n\nMachine: a test machine.\n\n" + table1_table(result)),
            std::string::npos);
}

TEST(Table1Recipe, StopsWhenAskedWithoutAReport) {
  const auto dir = testing::temp_dir("table1-stop");
  fs::create_directories(dir + "/data");
  testing::write_tiny_dataset(dir + "/data", 40, 28);
  Table1Options options;
  options.trials = 1;
  options.budget = {/*epochs=*/1, /*batch_size=*/20, /*limit=*/40, /*test_limit=*/20,
                    dir + "/data", /*threads=*/1, Precision::kFp32, dir + "/out"};
  const std::atomic<bool> stop{true};
  std::ostringstream log;
  const auto result = run_table1(options, &log, &stop);
  EXPECT_TRUE(result.interrupted);
  EXPECT_TRUE(result.rows.empty());
  EXPECT_FALSE(fs::exists(dir + "/out/table1.md"));
  EXPECT_EQ(log.str().rfind("== Baseline CNN, trial 1 of 1: " + dir + "/out/baseline/trial-1\n", 0),
            0u)
      << log.str();
  EXPECT_EQ(count_lines_starting(log.str(), "== "), 1); // no other trial started
  const auto trial = dir + "/out/baseline/trial-1";
  EXPECT_TRUE(fs::exists(trial + "/last.pt"));
  // Run again, it resumes that trial (and is stopped again).
  std::ostringstream again;
  EXPECT_TRUE(run_table1(options, &again, &stop).interrupted);
  EXPECT_NE(again.str().find("== Baseline CNN, trial 1 of 1: " + trial + "\n   (resuming at epoch 1)\n"),
            std::string::npos)
      << again.str();
  // On another budget it refuses the directory.
  options.budget.batch_size = 10;
  EXPECT_THROW(run_table1(options, nullptr, &stop), std::invalid_argument);
  fs::remove_all(dir);
}

TEST(RunTestError, ReadsTheEpochsEvaluatedRow) {
  const auto dir = testing::temp_dir("test-error");
  auto row = [](int64_t epoch, int64_t errors, int64_t size) {
    EpochRecord r;
    r.epoch = epoch;
    r.test_errors = errors;
    r.test_size = size;
    r.evaluated = size > 0;
    return nlohmann::json(r).dump() + "\n";
  };
  std::ofstream(dir + "/metrics.jsonl") << row(1, 5, 40) << row(2, 2, 40) << row(3, 0, 0);
  EXPECT_DOUBLE_EQ(run_test_error(dir, 1), 12.5);
  EXPECT_DOUBLE_EQ(run_test_error(dir, 2), 5.0);
  EXPECT_THROW(run_test_error(dir, 3), std::runtime_error); // not evaluated
  EXPECT_THROW(run_test_error(dir), std::runtime_error);    // the last row: epoch 3's
  EXPECT_THROW(run_test_error(dir, 4), std::runtime_error);
  std::ofstream(dir + "/metrics.jsonl") << row(1, 5, 40) << row(2, 3, 40);
  EXPECT_DOUBLE_EQ(run_test_error(dir), 7.5);
  EXPECT_THROW(run_test_error(dir + "/none"), std::runtime_error);
  fs::remove_all(dir);
}

AffineResult affine_result() {
  AffineResult result;
  result.capsnet = {"capsnet", "CapsNet", "capsnet", 99.23, 79, {{1, 98.5, 60}, {2, 99, 70.5}}, 11};
  result.baseline = {"baseline", "Baseline CNN", "baseline-cnn", 99.22, 66,
                     {{1, 97, 50}, {2, 98.5, 55}, {3, 99.25, 60}, {4, 99.6, 61}}, 22};
  result.machine = "a test machine";
  return result;
}

TEST(AffineRecipe, ComparesAtTheClosestExpandedAccuracy) {
  auto result = affine_result();
  // |99 - x| for 97, 98.5, 99.25, 99.6: 2, 0.5, 0.25, 0.6.
  EXPECT_EQ(result.matched_baseline_epoch().epoch, 3);
  result.baseline.epochs = {{1, 98.5, 0}, {2, 99.5, 0}}; // equally close: the first
  EXPECT_EQ(result.matched_baseline_epoch().epoch, 1);

  AffineOptions options;
  options.budget.epochs = 5;
  EXPECT_EQ(options.max_baseline_epochs(), 10); // 0: twice --epochs
  options.baseline_max_epochs = 3;
  EXPECT_EQ(options.max_baseline_epochs(), 5); // never fewer than CapsNet's
  options.baseline_max_epochs = 12;
  EXPECT_EQ(options.max_baseline_epochs(), 12);
}

TEST(AffineRecipe, ReportsTheMatchedPairAndEveryEpoch) {
  AffineOptions options;
  options.budget.epochs = 2;
  options.budget.batch_size = 32;
  options.budget.test_limit = 32;
  options.baseline_max_epochs = 4;
  const auto report = affine_report(options, affine_result());
  EXPECT_EQ(report.rfind("# Affine robustness (Section 5.2), reproduced\n\nTrained on expanded "
                         "MNIST (each digit at a random whole-pixel position in 40x40), 2 epochs, "
                         "batch 32, all 60,000 training images, ",
                         0),
            0u)
      << report;
  EXPECT_NE(report.find("tested on 32 test digits"), std::string::npos);
  EXPECT_NE(report.find("and on, up to 4, until"), std::string::npos);
  EXPECT_NE(report.find("CapsNet has 11 parameters;"), std::string::npos);
  EXPECT_NE(report.find("as the paper's was, 22.\n\nMachine: a test machine.\n\n"),
            std::string::npos);
  EXPECT_TRUE(has_line(report, "| CapsNet | 2 | 99.00 | 70.50 | 99.23, 79 |")) << report;
  EXPECT_TRUE(has_line(report, "| Baseline CNN, the epoch closest in expanded accuracy | 3 | "
                               "99.25 | 60.00 | 99.22, 66 |"))
      << report;
  EXPECT_TRUE(has_line(report, "| model | epoch | expanded (%) | affine (%) |"));
  EXPECT_EQ(count_lines_starting(report, "| CapsNet | "), 3); // the comparison and two epochs
  EXPECT_EQ(count_lines_starting(report, "| Baseline CNN | "), 4);
  EXPECT_TRUE(has_line(report, "| Baseline CNN | 4 | 99.60 | 61.00 |"));
}

TEST(AffineRecipe, EpochRowsKeepTheirFileFormat) {
  // OUT/MODEL-affine.jsonl, which runs read back and scripts parse.
  const AffineEpoch row{2, 99.5, 70.25};
  EXPECT_EQ(nlohmann::json(row).dump(),
            R"({"affine_accuracy":70.25,"epoch":2,"expanded_accuracy":99.5})");
  const auto back = nlohmann::json::parse(nlohmann::json(row).dump()).get<AffineEpoch>();
  EXPECT_EQ(back.epoch, 2);
  EXPECT_EQ(back.expanded_accuracy, 99.5);
  EXPECT_EQ(back.affine_accuracy, 70.25);
}

BenchResult hand_made_bench() {
  BenchResult r;
  r.options.batch_size = 8;
  r.options.steps = 4;
  r.options.warmup = 1;
  r.threads = 2;
  r.cpu.model = "Test CPU";
  r.cpu.avx2 = r.cpu.fma = true;
  r.kernel_isa = KernelIsa::kAvx2;
  r.bf16 = {false, "", "no bf16 here", ""};
  r.blas_core = "Haswell";
  r.conv_path = "oneDNN convolution";
  r.routing_path = "fused, capsnet's AVX2 kernels";
  r.flops.conv1 = 0.5e9;       // forward 2 GFLOP,
  r.flops.primary = 1.5e9;     // training 3 * 2 - 0.5 = 5.5
  r.flops.first_layer = 0.5e9; // (conv1 needs no input gradient)
  r.train_seconds = 2;         // 32 images: 16 images/s, 88 GFLOP/s
  r.inference_seconds = 0.5;   // 64 images/s, 128 GFLOP/s
  r.inference_p50_seconds = 0.12;
  r.stage_seconds = {{"backward", 1.5}, {"conv1", 0.5}};
  r.staged_seconds = 2;
  r.probe_fp32_gflops = 176;
  r.peak_rss_mib = 300.4;
  return r;
}

TEST(BenchRecipe, RendersTheTerminalReport) {
  const auto r = hand_made_bench();
  EXPECT_DOUBLE_EQ(r.train_images_per_second(), 16);
  EXPECT_DOUBLE_EQ(r.train_gflops(), 88);
  EXPECT_DOUBLE_EQ(r.inference_gflops(), 128);
  EXPECT_EQ(bench_text(r),
            "capsnet bench: capsnet, batch 8, 4 steps after 1 warm-up, 2 threads, fused routing, "
            "fp32\n"
            "CPU: " + r.cpu.describe() + "; capsnet kernels AVX2\n"
            "BLAS core Haswell (OPENBLAS_CORETYPE=unset), LibTorch " TORCH_VERSION "\n"
            "primary-capsule convolution: oneDNN convolution; routing: fused, capsnet's AVX2 "
            "kernels\n"
            "training       16.0 images/s    88.0 GFLOP/s (5.500 GFLOP/image)\n"
            "inference      64.0 images/s   128.0 GFLOP/s (2.000 GFLOP/image), p50 120.00 ms a "
            "batch\n"
            "matrix-product probe: fp32 176.0 GFLOP/s, bf16 unavailable: no bf16 here\n"
            "training runs at 50% of the fp32 probe\n"
            "peak resident memory 300 MiB\n"
            "training step, seconds per stage:\n"
            "  backward                        0.375  (75.0%)\n"
            "  conv1                           0.125  (25.0%)\n");
}

TEST(BenchRecipe, SaysWhenBf16ProductsAreSlowerThanFp32) {
  auto r = hand_made_bench();
  r.bf16 = {true, "AVX512-BF16", "", "an Intel CPU without AMX"};
  r.probe_bf16_gflops = 132; // 0.75x the fp32 probe's 176
  const auto text = bench_text(r);
  EXPECT_NE(text.find("matrix-product probe: fp32 176.0 GFLOP/s, bf16 132 GFLOP/s (AVX512-BF16)\n"
                      "bf16 matrix products run at 0.75x fp32's on this CPU: bf16 will not be "
                      "faster here\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(bench_json(r).at("bf16_not_faster_reason"), "an Intel CPU without AMX");
  r.probe_bf16_gflops = 352; // twice fp32: nothing to say
  EXPECT_EQ(bench_text(r).find("will not be faster"), std::string::npos);
}

TEST(BenchRecipe, RendersOneJsonObject) {
  auto r = hand_made_bench();
  r.openblas_coretype = "Nehalem";
  const auto j = bench_json(r);
  EXPECT_EQ(j.size(), 33u);
  EXPECT_DOUBLE_EQ(j.at("inference_p50_ms").get<double>(), 120);
  EXPECT_EQ(j.at("model"), "capsnet");
  EXPECT_EQ(j.at("cuda_graph"), false);
  EXPECT_EQ(j.at("routing"), "fused");
  EXPECT_EQ(j.at("cpu_bf16"), "none");
  EXPECT_EQ(j.at("openblas_coretype_env"), "Nehalem");
  EXPECT_TRUE(j.at("bf16_matmul_probe_gflops").is_null());
  EXPECT_DOUBLE_EQ(j.at("train_fraction_of_probe").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j.at("train_ms_per_step").get<double>(), 500);
  EXPECT_DOUBLE_EQ(j.at("stage_seconds_per_step").at("backward").get<double>(), 0.375);
  EXPECT_DOUBLE_EQ(j.at("train_gflop_per_image").get<double>(), 5.5);
}

TEST(BenchRecipe, TimesEveryStageOfTheTimedSteps) {
  BenchOptions options;
  options.batch_size = 2;
  options.steps = 2;
  options.warmup = 0;
  const auto r = run_bench(options);
  EXPECT_EQ(r.options.batch_size, 2);
  EXPECT_GT(r.train_seconds, 0);
  EXPECT_GT(r.inference_seconds, 0);
  // The median of 2 steps is the longer one: within the total, at least half of it.
  EXPECT_LE(r.inference_p50_seconds, r.inference_seconds);
  EXPECT_GE(r.inference_p50_seconds, r.inference_seconds / 2);
  // On the CPU the stages are timed in the timed steps themselves.
  EXPECT_EQ(r.staged_seconds, r.train_seconds);
  std::set<std::string> names;
  double staged = 0;
  for (const auto& [name, seconds] : r.stage_seconds) {
    names.insert(name);
    staged += seconds;
    EXPECT_GE(seconds, 0) << name;
  }
  // Forward and backward of each stage; the decoder's backward includes the
  // capsule lengths' (they meet at the capsules' gradient).
  EXPECT_EQ(names, (std::set<std::string>{
                       "conv1", "conv1 (backward)", "primary_capsules",
                       "primary_capsules (backward)", "digit_capsules",
                       "digit_capsules (backward)", "decoder", "decoder (backward)", "losses",
                       "losses (backward)", "optimizer"}));
  EXPECT_LE(staged, r.staged_seconds * (1 + 1e-9));
  EXPECT_GT(staged, 0.5 * r.staged_seconds); // the stages are most of the step
  EXPECT_EQ(r.flops.training(), model_flops(TrainOptions{}.model).training());
  EXPECT_GT(r.probe_fp32_gflops, 0);
  EXPECT_EQ(r.probe_bf16_gflops > 0, r.bf16.available);
  if (!r.options.device.is_cuda()) {
    // auto: the primary capsules by Winograd in training, oneDNN's forward in inference.
    EXPECT_EQ(r.conv_algo, ConvAlgo::kWinograd);
    EXPECT_NE(r.conv_path.find("Winograd F(2x2, 5x5) on the four phases + sgemm (OpenBLAS "),
              std::string::npos) << r.conv_path;
    EXPECT_NE(r.conv_path.find(" in training, oneDNN forward in inference"), std::string::npos)
        << r.conv_path;
  }
  EXPECT_EQ(bench_text(r).rfind("capsnet bench: capsnet, batch 2, 2 steps after 0 warm-up, ", 0), 0u);
}

TEST(ErrorMessage, NamesTheKindOfError) {
  EXPECT_EQ(error_message(DataError("f: bad")), "data error: f: bad");
  EXPECT_EQ(error_message(ImageError("p.png: empty")), "image error: p.png: empty");
  EXPECT_EQ(error_message(CheckpointError("c.pt: damaged")), "checkpoint error: c.pt: damaged");
  EXPECT_EQ(error_message(TrainingError("nan")), "training error: nan");
  EXPECT_EQ(error_message(WriteError("full")), "write error: full");
  EXPECT_EQ(error_message(std::invalid_argument("--lr")), "invalid option: --lr");
  EXPECT_EQ(error_message(std::runtime_error("x")), "error: x");
  // A DistributedError is a TrainingError; the message says how to go on.
  const auto distributed = error_message(dist::DistributedError("rank 1 failed"));
  EXPECT_EQ(distributed.rfind("distributed training stopped: rank 1 failed\n", 0), 0u);
  EXPECT_NE(distributed.find("capsnet train --resume RUN_DIR"), std::string::npos);
  try {
    TORCH_CHECK(false, "expected a positive size");
  } catch (const c10::Error& e) {
    EXPECT_EQ(error_message(e), "internal error: expected a positive size");
  }
}

} // namespace
} // namespace capsnet
