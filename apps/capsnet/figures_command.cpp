// The paper's figures from a trained model (reconstructions, Fig. 3;
// capsule-dimension perturbations, Fig. 4), Efficient-CapsNet's attention
// coefficients, and training curves of a run: the library's viz/figures.h.
#include "commands.h"

#include "capsnet/inference/inference.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/viz/figure.h"
#include "capsnet/viz/figures.h"

#include <cstdio>
#include <memory>

namespace capsnet::cli {

namespace {

struct CheckpointFlags {
  std::string checkpoint, out, data_dir, dataset;
  int threads = 0;
  int scale = 2;
};

void add_checkpoint_flags(CLI::App* cmd, CheckpointFlags& f, const std::string& out_default) {
  add_checkpoint_option(cmd, f.checkpoint);
  f.out = out_default;
  cmd->add_option("--out", f.out, "PNG file to write")->capture_default_str();
  add_data_option(cmd, f.data_dir, "data directory (default: the run's)");
  add_dataset_option(cmd, f.dataset, "data set (default: the run's)");
  cmd->add_option("--scale", f.scale, "screen pixels per image pixel")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  add_threads_option(cmd, f.threads);
}

// What a figure of a trained model starts from: the model, and the first
// `limit` of its test examples (0: all) from all of the base split, so that a
// generated example is the one the full test set has; the output is checked
// against what is read.
struct FigureInputs {
  Predictor predictor;
  Batch examples;
};
FigureInputs figure_inputs(const CheckpointFlags& f, const std::string& what,
                           const std::vector<Capability>& needs, int64_t limit) {
  set_thread_count(f.threads);
  auto predictor = Predictor::load(f.checkpoint, what, needs);
  auto options = predictor.options();
  check_outputs_against({f.out}, f.checkpoint, options, f.data_dir, f.dataset);
  const auto data = load_test_split(options, f.data_dir, f.dataset, 0, predictor.shape(), &std::cerr);
  auto examples = test_examples(options, data, limit, predictor.shape());
  return {std::move(predictor), std::move(examples)};
}

} // namespace

Runner add_reconstruct_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "reconstruct", "Figure 3: test digits above their reconstructions, and misclassified "
                     "digits reconstructed from the predicted and from the true capsule");
  auto f = std::make_shared<CheckpointFlags>();
  auto n = std::make_shared<int64_t>(32);
  auto errors = std::make_shared<int64_t>(8);
  auto search = std::make_shared<int64_t>(0);
  add_checkpoint_flags(cmd, *f, "recon.png");
  cmd->add_option("--n", *n, "test digits in the first part (the first N of the test set)")
      ->check(CLI::Range(int64_t(1), int64_t(1024)))
      ->capture_default_str();
  cmd->add_option("--errors", *errors, "misclassified digits in the second part (0: none)")
      ->check(CLI::Range(int64_t(0), int64_t(256)))
      ->capture_default_str();
  cmd->add_option("--search", *search,
                  "look for misclassified digits among the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);

  return [f, n, errors, search]() {
    const auto [predictor, examples] = figure_inputs(*f, "capsnet reconstruct", {Capability::kDecoder},
                                                     *errors > 0 ? *search : *n);
    const auto r = viz::reconstruction_figure(predictor, examples, *n, *errors,
                                              "Reconstructions: " + f->checkpoint, f->scale);
    viz::write_grid_png(f->out, r.figure);
    const bool pairs = examples.labels.dim() == 2;
    std::printf("wrote %s: %ld test %s with reconstructions", f->out.c_str(),
                static_cast<long>(r.shown), pairs ? "pairs" : "digits");
    if (*errors > 0) {
      std::printf("; %ld of %ld misclassified among %ld test images",
                  static_cast<long>(std::min(*errors, r.wrong)), static_cast<long>(r.wrong),
                  static_cast<long>(r.scanned));
    }
    std::printf("\n");
    return 0;
  };
}

Runner add_attention_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "attention", "The routing's coupling coefficients of test images: for Efficient-CapsNet, "
                   "the self-attention c_ij of each primary capsule i (row) for each class j "
                   "(column)");
  auto f = std::make_shared<CheckpointFlags>();
  auto n = std::make_shared<int64_t>(8);
  add_checkpoint_flags(cmd, *f, "attention.png");
  cmd->add_option("--n", *n, "test images shown (the first N of the test set)")
      ->check(CLI::Range(int64_t(1), int64_t(256)))
      ->capture_default_str();

  return [f, n]() {
    const auto [predictor, examples] = figure_inputs(*f, "capsnet attention", {}, *n);
    const auto a = viz::attention_figure(predictor, examples, *n,
                                         "Self-attention routing: " + f->checkpoint, f->scale);
    viz::write_grid_png(f->out, a.figure);
    std::printf("wrote %s: coupling coefficients of %ld test images (%ld primary capsules x %ld "
                "classes); mean coupling to the predicted class %.3f\n",
                f->out.c_str(), static_cast<long>(a.shown), static_cast<long>(a.inputs),
                static_cast<long>(a.classes), a.mean_to_predicted);
    return 0;
  };
}

Runner add_perturb_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "perturb", "Figure 4: reconstructions as each dimension of the active digit capsule of "
                 "one test image moves over [-range, range]");
  auto f = std::make_shared<CheckpointFlags>();
  auto index = std::make_shared<int64_t>(0);
  auto range = std::make_shared<double>(0.25);
  auto step = std::make_shared<double>(0.05);
  auto klass = std::make_shared<int64_t>(-1);
  add_checkpoint_flags(cmd, *f, "perturb.png");
  cmd->add_option("--index", *index, "test image index")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--class", *klass, "capsule to perturb (default: the predicted class)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--range", *range, "largest change of a dimension")
      ->check(finite_range(1e-3, 10.0))
      ->capture_default_str();
  cmd->add_option("--step", *step, "change between columns")
      ->check(finite_range(1e-3, 10.0))
      ->capture_default_str();

  return [f, index, range, step, klass]() {
    const auto [predictor, examples] =
        figure_inputs(*f, "capsnet perturb", {Capability::kDecoder}, *index + 1);
    const auto p = viz::perturbation_figure(predictor, examples, *index, *klass, *range, *step,
                                            f->scale);
    viz::write_grid_png(f->out, p.figure);
    std::printf("wrote %s: %ld dimensions x %ld steps of %.3g for capsule %ld of test image %ld\n",
                f->out.c_str(), static_cast<long>(p.dimensions), static_cast<long>(p.columns),
                *step, static_cast<long>(p.capsule), static_cast<long>(*index));
    return 0;
  };
}

Runner add_plot_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Training curves of a run: loss and accuracy per epoch, "
                                         "train and test, from RUN_DIR/metrics.jsonl");
  auto run_dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>("curves.png");
  cmd->add_option("run_dir", *run_dir, "run directory written by capsnet train")->required();
  cmd->add_option("--out", *out, "PNG file to write")->capture_default_str();

  return [run_dir, out]() {
    const auto plot = viz::plot_run(*run_dir, *out);
    std::printf("wrote %s: %zu epochs, last test accuracy %.2f%%\n", out->c_str(), plot.epochs,
                plot.last_test_accuracy);
    return 0;
  };
}

} // namespace capsnet::cli
