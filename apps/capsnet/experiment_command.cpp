// capsnet experiment: the paper's comparisons as one command each
// (recipes/experiments.h): table1 (Table 1) and affine (Section 5.2).

#include "commands.h"
#include "capsnet/runtime/process.h"

#include "capsnet/runtime/runtime.h"
#include "capsnet/recipes/experiments.h"

#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

// Runs an experiment (run_table1 or run_affine) with Ctrl-C as its stop, and
// prints its report (`report(result)`), or where to go on from.
template <typename Options, typename Run, typename Report>
int run_experiment(const Options& options, Run run, Report report) {
  StopSignals signals;
  set_thread_count(options.budget.threads);
  const auto result = run(options, &std::cout, &signals.stop());
  if (result.interrupted) {
    std::cerr << program_name() << ": interrupted; run the same command again to go on\n";
    return signals.exit_code();
  }
  std::cout << "\n" << report(result) << "\nwritten to " << result.report_path << std::endl;
  return 0;
}

// The options every experiment takes: its budget, data, threads, precision,
// --out. Their bounds are the library's (validate in recipes/experiments.h).
void add_budget_options(CLI::App* cmd, ExperimentBudget& b, const std::string& epochs_help,
                        const std::string& out_help) {
  cmd->add_option("--epochs", b.epochs, epochs_help)->capture_default_str();
  cmd->add_option("--batch-size", b.batch_size, "training batch")->capture_default_str();
  cmd->add_option("--limit", b.limit, "train on the first N images (0: all)");
  cmd->add_option("--test-limit", b.test_limit, "test on the first N images (0: all)");
  add_data_option(cmd, b.data_dir,
                  "the data's directory (default: the data set's own, data/mnist; a folder of "
                  "pictures with table1 --dataset folder)");
  add_threads_option(cmd, b.threads);
  add_precision_option(cmd, b.precision);
  cmd->add_option("--out", b.out, out_help)->capture_default_str();
}

} // namespace

Runner add_experiment_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("experiment", "The paper's experiments");
  cmd->require_subcommand(1);
  auto* t1 = cmd->add_subcommand(
      "table1", "Table 1: the baseline CNN and CapsNet with 1 or 3 routing iterations, with and "
                "without reconstruction, --trials times each; resumes; writes OUT/table1.md");
  auto table1 = std::make_shared<Table1Options>();
  table1->budget.out = "runs/table1";
  t1->add_option("--trials", table1->trials, "trainings per row (seeds 1..N)")
      ->capture_default_str();
  add_budget_options(t1, table1->budget, "epochs per training",
                     "directory of the trials' runs and table1.md");
  add_dataset_option(t1, table1->budget.dataset,
                     "data set of the table: mnist (the paper's), another registered one, or "
                     "folder with --data DIR (your pictures; the paper's figures beside the "
                     "table are MNIST's)")
      ->capture_default_str();
  auto* af = cmd->add_subcommand(
      "affine", "Section 5.2: CapsNet and the baseline CNN trained on expanded MNIST, each epoch "
                "tested on expanded and on affinely transformed digits, compared at matched "
                "expanded accuracy; resumes; writes OUT/affine.md");
  auto affine = std::make_shared<AffineOptions>();
  affine->budget.out = "runs/affine";
  add_budget_options(af, affine->budget,
                     "CapsNet's epochs, and the baseline's at least (each evaluated on both test "
                     "sets)",
                     "directory of the two runs and affine.md");
  af->add_option("--baseline-max-epochs", affine->baseline_max_epochs,
                 "the baseline trains past --epochs until it matches CapsNet's expanded "
                 "accuracy, up to this many epochs (default: twice --epochs)");
  af->add_flag("--efficient-capsnet", affine->efficient_capsnet,
               "also train Efficient-CapsNet for --epochs and report its row");
  return [table1, affine, t1]() {
    if (t1->parsed()) return run_experiment(*table1, run_table1, table1_table);
    return run_experiment(*affine, run_affine,
                          [&](const AffineResult& r) { return affine_report(*affine, r); });
  };
}

} // namespace capsnet::cli
