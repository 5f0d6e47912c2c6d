#include "capsnet/recipes/experiments.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/epoch_record.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/ops/cpu_features.h"
#include "capsnet/recipes/run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace capsnet {

namespace {

namespace fs = std::filesystem;

std::ostream& or_nowhere(std::ostream* log) {
  thread_local std::ostream nowhere(nullptr); // no buffer: writes are dropped
  return log ? *log : nowhere;
}

std::string percent(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

// The paper's figures as it prints them: 99.23, 79.
std::string paper_figure(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::string images_text(int64_t limit, const char* all) {
  return limit ? std::to_string(limit) : std::string(all);
}

// The run in `dir`'s checkpoint (none: false) after checking that it is of
// `fresh`'s budget (batch, limits, seed, data set, network) and has not gone
// past `epochs`; throws std::invalid_argument naming what differs.
bool check_budget(const std::string& dir, const TrainOptions& fresh, int64_t epochs,
                  LoadedCheckpoint* out = nullptr) {
  if (!fs::exists(last_checkpoint_path(dir))) return false;
  auto loaded = load_checkpoint(last_checkpoint_path(dir));
  const auto& o = loaded.options;
  if (o.batch_size != fresh.batch_size || o.limit != fresh.limit ||
      o.test_limit != fresh.test_limit || o.seed != fresh.seed || o.dataset != fresh.dataset ||
      o.model_name != fresh.model_name || loaded.state.epoch > epochs) {
    throw std::invalid_argument(
        dir + " was trained on another budget (" + o.model_name + " on " + o.dataset +
        ", batch " + std::to_string(o.batch_size) + ", --limit " + std::to_string(o.limit) +
        ", --test-limit " + std::to_string(o.test_limit) + ", seed " + std::to_string(o.seed) +
        ", " + std::to_string(loaded.state.epoch) +
        " epochs done); give the same options, or another --out");
  }
  if (out) *out = std::move(loaded);
  return true;
}

// Trains the run in `dir` to `epochs` epochs: afresh from `fresh` when it has
// no checkpoint, else resumed from it (check_budget). Returns false when
// `stop` interrupted it.
bool train_to(const std::string& dir, const TrainOptions& fresh, int64_t epochs,
              std::ostream* log, const std::atomic<bool>* stop) {
  TrainControl control;
  control.stop = stop;
  control.log = log;
  TrainOptions options = fresh;
  LoadedCheckpoint loaded;
  if (check_budget(dir, fresh, epochs, &loaded)) {
    if (loaded.state.epoch == epochs) {
      or_nowhere(log) << "   (done)" << std::endl;
      return true;
    }
    // What may change on resume comes from `fresh` (as capsnet train --resume).
    auto asked = fresh;
    asked.epochs = epochs;
    options = resumed_options(loaded.options, asked);
    control.resume = true;
    or_nowhere(log) << "   (resuming at epoch " << loaded.state.epoch + 1 << ")" << std::endl;
  } else {
    control.force = fs::exists(dir); // ours, left before its first checkpoint
  }
  options.epochs = epochs;
  return !train(options, dir, control).interrupted;
}

} // namespace

namespace {

void require_in(int64_t value, int64_t lo, int64_t hi, const std::string& name) {
  if (value < lo || value > hi) {
    throw std::invalid_argument(name + " must be in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got " + std::to_string(value));
  }
}

} // namespace

void validate(const ExperimentBudget& budget) {
  validate(experiment_options(budget, 1));
  require_in(budget.epochs, 1, 100000, "--epochs");
}

TrainOptions experiment_options(const ExperimentBudget& budget, uint64_t seed) {
  TrainOptions fresh = preset_options("paper");
  // The paper's procedure, its initialisation included, on the paper's data
  // sets; a folder of one's own pictures starts calibrated, as train does.
  fresh.calibrate_init = budget.dataset == "folder";
  fresh.batch_size = budget.batch_size;
  fresh.limit = budget.limit;
  fresh.test_limit = budget.test_limit;
  fresh.data_dir = budget.data_dir;
  fresh.dataset = budget.dataset;
  fresh.seed = seed;
  fresh.lr_decay = 0.9905;
  fresh.precision = budget.precision;
  fresh.threads = budget.threads;
  return fresh;
}

double run_test_error(const std::string& run_dir, int64_t epoch) {
  const auto path = (fs::path(run_dir) / "metrics.jsonl").string();
  const EpochRecord* found = nullptr;
  const auto records = read_epoch_records(path);
  for (const auto& record : records) {
    if (epoch == 0 || record.epoch == epoch) found = &record;
  }
  if (!found || !found->evaluated || found->test_size <= 0) {
    throw std::runtime_error(path + " has no test evaluation for epoch " + std::to_string(epoch));
  }
  return found->test_error_percent();
}

// Table 1.

std::vector<Table1Row> table1_rows() {
  return {
      {"baseline", "Baseline CNN", 0.39, [](TrainOptions& o) { o.model_name = "baseline-cnn"; }},
      {"capsnet-r1-norecon", "CapsNet, routing 1, no reconstruction", 0.34,
       [](TrainOptions& o) {
         o.model.routing_iterations = 1;
         o.recon_weight = 0;
       }},
      {"capsnet-r1-recon", "CapsNet, routing 1, reconstruction", 0.29,
       [](TrainOptions& o) { o.model.routing_iterations = 1; }},
      {"capsnet-r3-norecon", "CapsNet, routing 3, no reconstruction", 0.35,
       [](TrainOptions& o) { o.recon_weight = 0; }},
      {"capsnet-r3-recon", "CapsNet, routing 3, reconstruction", 0.25, [](TrainOptions&) {}},
  };
}

double Table1RowResult::mean() const {
  double mean = 0;
  for (double e : test_errors) mean += e / test_errors.size();
  return mean;
}

double Table1RowResult::std_dev() const {
  if (test_errors.size() < 2) return 0.0;
  const double m = mean();
  double var = 0;
  for (double e : test_errors) var += (e - m) * (e - m);
  return std::sqrt(var / (test_errors.size() - 1));
}

Table1Result run_table1(const Table1Options& options, std::ostream* log,
                        const std::atomic<bool>* stop) {
  const auto& budget = options.budget;
  validate(budget);
  require_in(options.trials, 1, 100, "--trials");
  fs::create_directories(budget.out);
  Table1Result result;
  for (const auto& row : table1_rows()) {
    Table1RowResult measured{row.label, row.paper_error, {}};
    for (int64_t trial = 1; trial <= options.trials; ++trial) {
      const auto dir = (fs::path(budget.out) / row.name / ("trial-" + std::to_string(trial))).string();
      TrainOptions fresh = experiment_options(budget, static_cast<uint64_t>(trial));
      row.apply(fresh);
      or_nowhere(log) << "== " << row.label << ", trial " << trial << " of " << options.trials
                      << ": " << dir << std::endl;
      if (!train_to(dir, fresh, budget.epochs, log, stop)) {
        result.interrupted = true;
        return result;
      }
      measured.test_errors.push_back(run_test_error(dir));
    }
    result.rows.push_back(std::move(measured));
  }
  result.machine = cpu_features().describe();
  result.report_path = (fs::path(budget.out) / "table1.md").string();
  write_file_atomically(result.report_path, table1_report(options, result));
  return result;
}

std::string table1_table(const Table1Result& result) {
  std::ostringstream table;
  table << "| Table 1 row | test error, mean ± std (%) | trials | the paper's (%) |\n"
        << "|---|---|---|---|\n";
  for (const auto& row : result.rows) {
    table << "| " << row.label << " | " << percent(row.mean()) << " ± " << percent(row.std_dev())
          << " | " << row.test_errors.size() << " | " << percent(row.paper_error) << " |\n";
  }
  return table.str();
}

std::string table1_report(const Table1Options& options, const Table1Result& result) {
  const auto& b = options.budget;
  std::ostringstream doc;
  doc << "# Table 1, reproduced\n\n"
      << "Budget: " << b.epochs << " epochs, batch " << b.batch_size << ", "
      << images_text(b.limit, "all 60,000") << " training images, "
      << images_text(b.test_limit, "all 10,000")
      << " test images; Adam at 0.001 decaying by 0.9905 per epoch; shifts of up to 2 px; "
      << "seeds 1-" << options.trials << "; CapsNet's primary-capsule convolution in "
      << enum_name(b.precision) << ". The paper trained for about 640 epochs (300,000 steps of "
      << "128). Test error: the last epoch's.\n\nMachine: " << result.machine << ".\n\n"
      << table1_table(result);
  return doc.str();
}

// Section 5.2.

namespace {

// How many epochs a model of the affine experiment trains: at least
// `min_epochs`, and on while below `target` expanded accuracy, up to `max_epochs`.
struct AffineSchedule {
  int64_t min_epochs = 0, max_epochs = 0;
  double target = 0;

  bool more(const std::vector<AffineEpoch>& done) const {
    const auto n = static_cast<int64_t>(done.size());
    if (n >= max_epochs) return false;
    return n < min_epochs || done.back().expanded_accuracy < target;
  }
};

std::vector<AffineEpoch> read_affine_epochs(const std::string& path) {
  std::vector<AffineEpoch> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line).get<AffineEpoch>());
  }
  return rows;
}

void write_affine_epochs(const std::string& path, const std::vector<AffineEpoch>& rows) {
  std::string text;
  for (const auto& row : rows) text += nlohmann::json(row).dump() + "\n";
  write_file_atomically(path, text);
}

// The options of one model's run: the experiments' budget on expanded MNIST.
TrainOptions affine_run_options(const ExperimentBudget& budget, const std::string& model_name) {
  TrainOptions fresh = experiment_options(budget, 1);
  fresh.dataset = "expanded-mnist";
  fresh.model.image_size = fresh.baseline.image_size = fresh.efficient.image_size =
      dataset_info(fresh.dataset).image_size;
  // The paper's baseline here has "a similar number of parameters" to
  // CapsNet's. Table 1's, unpooled, would have 69.7M on 40x40 inputs, five
  // times CapsNet's 13.5M; 2x2 pooling after the first convolution (as the
  // authors' conv_model.py pools after each) gives 19.3M and 1/4 the work.
  fresh.baseline.pool_after = {0};
  fresh.model_name = model_name;
  return fresh;
}

// The trained run in `dir` at `epoch`, evaluated on the affine test set.
AffineEpoch evaluate_affine_epoch(const std::string& dir, int64_t epoch,
                                  const ExperimentBudget& budget, const std::string& rows_path) {
  auto loaded = load_checkpoint(last_checkpoint_path(dir));
  if (loaded.state.epoch != epoch) {
    throw std::runtime_error(dir + "/last.pt holds epoch " + std::to_string(loaded.state.epoch) +
                             ", not " + std::to_string(epoch) + "; remove " + rows_path +
                             " and run again");
  }
  auto options = loaded.options;
  options.dataset = "affine-mnist";
  // As `capsnet eval --dataset affine-mnist` reads it: --data, else the
  // run's directory, else the data set's default.
  const auto data_dir = !budget.data_dir.empty()    ? budget.data_dir
                        : !options.data_dir.empty() ? options.data_dir
                                                    : dataset_info(options.dataset).default_dir;
  const auto data = load_dataset(data_dir, Split::kTest, options.dataset, budget.test_limit);
  const auto affine = evaluate(loaded, data, options);
  return {epoch, 100.0 - run_test_error(dir, epoch), 100.0 * affine.accuracy()};
}

// Trains and evaluates `model` epoch by epoch as `schedule` says, after the
// epochs read back from OUT/NAME-affine.jsonl. False: interrupted.
bool train_affine_model(const AffineOptions& options, const AffineSchedule& schedule,
                        AffineModelResult& model, std::ostream* log,
                        const std::atomic<bool>* stop) {
  const auto& budget = options.budget;
  const auto dir = (fs::path(budget.out) / model.name).string();
  const auto rows_path = (fs::path(budget.out) / (model.name + "-affine.jsonl")).string();
  const TrainOptions fresh = affine_run_options(budget, model.model_name);
  auto& rows = model.epochs;
  rows = read_affine_epochs(rows_path);
  check_budget(dir, fresh, schedule.max_epochs); // the epochs read back must be of this budget too
  if (!rows.empty()) {
    or_nowhere(log) << "== " << model.label << ": epochs 1-" << rows.size() << " read back from "
                    << rows_path << std::endl;
  }
  for (int64_t epoch = int64_t(rows.size()) + 1; schedule.more(rows); ++epoch) {
    auto& out = or_nowhere(log);
    out << "== " << model.label << " on expanded MNIST, epoch " << epoch;
    if (epoch > schedule.min_epochs) {
      out << " (below CapsNet's " << percent(schedule.target) << "% so far; at most "
          << schedule.max_epochs << ")";
    } else {
      out << " of " << budget.epochs;
    }
    out << ": " << dir << std::endl;
    if (!train_to(dir, fresh, epoch, log, stop)) return false;
    rows.push_back(evaluate_affine_epoch(dir, epoch, budget, rows_path));
    out << "   expanded MNIST test " << percent(rows.back().expanded_accuracy)
        << "%, affine test " << percent(rows.back().affine_accuracy) << "%" << std::endl;
    write_affine_epochs(rows_path, rows);
  }
  if (int64_t(rows.size()) > schedule.max_epochs) {
    throw std::invalid_argument(rows_path + " holds " + std::to_string(rows.size()) +
                                " epochs, more than " + std::to_string(schedule.max_epochs) +
                                "; give the same options, or another --out");
  }
  return true;
}

int64_t count_parameters(const std::string& dir) {
  auto loaded = load_checkpoint(last_checkpoint_path(dir));
  int64_t count = 0;
  for (const auto& p : loaded.module().parameters()) count += p.numel();
  return count;
}

} // namespace

int64_t AffineOptions::max_baseline_epochs() const {
  return std::max(budget.epochs, baseline_max_epochs > 0 ? baseline_max_epochs : 2 * budget.epochs);
}

const AffineEpoch& AffineResult::matched_baseline_epoch() const {
  const double target = capsnet.epochs.back().expanded_accuracy;
  const AffineEpoch* match = &baseline.epochs.front();
  for (const auto& e : baseline.epochs) {
    if (std::abs(e.expanded_accuracy - target) < std::abs(match->expanded_accuracy - target)) {
      match = &e;
    }
  }
  return *match;
}

AffineResult run_affine(const AffineOptions& options, std::ostream* log,
                        const std::atomic<bool>* stop) {
  const auto& budget = options.budget;
  validate(budget);
  require_in(options.baseline_max_epochs, 0, 100000, "--baseline-max-epochs (0: twice --epochs)");
  fs::create_directories(budget.out);
  AffineResult result;
  result.capsnet = {"capsnet", "CapsNet", "capsnet", 99.23, 79, {}, 0};
  result.baseline = {"baseline", "Baseline CNN", "baseline-cnn", 99.22, 66, {}, 0};
  // CapsNet trains budget.epochs; the baseline goes on, up to its cap, until
  // it reaches CapsNet's expanded-MNIST accuracy (the paper's matched pair).
  const AffineSchedule capsnet{budget.epochs, budget.epochs, 0.0};
  if (!train_affine_model(options, capsnet, result.capsnet, log, stop)) {
    result.interrupted = true;
    return result;
  }
  const AffineSchedule baseline{budget.epochs, options.max_baseline_epochs(),
                                result.capsnet.epochs.back().expanded_accuracy};
  if (!train_affine_model(options, baseline, result.baseline, log, stop)) {
    result.interrupted = true;
    return result;
  }
  if (options.efficient_capsnet) {
    result.efficient = {"efficient-capsnet", "Efficient-CapsNet", "efficient-capsnet", 0, 0, {}, 0};
    if (!train_affine_model(options, capsnet, result.efficient, log, stop)) {
      result.interrupted = true;
      return result;
    }
  }
  for (auto* model : {&result.capsnet, &result.baseline, &result.efficient}) {
    if (model->epochs.empty()) continue;
    model->parameters = count_parameters((fs::path(budget.out) / model->name).string());
  }
  result.machine = cpu_features().describe();
  result.report_path = (fs::path(budget.out) / "affine.md").string();
  write_file_atomically(result.report_path, affine_report(options, result));
  return result;
}

std::string affine_report(const AffineOptions& options, const AffineResult& result) {
  const auto& b = options.budget;
  const auto& caps = result.capsnet.epochs.back();
  const auto& match = result.matched_baseline_epoch();
  const auto paper = [](const AffineModelResult& m) {
    return paper_figure(m.paper_expanded) + ", " + paper_figure(m.paper_affine);
  };
  std::ostringstream doc;
  doc << "# Affine robustness (Section 5.2), reproduced\n\n"
      << "Trained on expanded MNIST (each digit at a random whole-pixel position in 40x40), "
      << b.epochs << " epochs, batch " << b.batch_size << ", "
      << images_text(b.limit, "all 60,000") << " training images, "
      << "CapsNet's primary-capsule convolution in " << enum_name(b.precision) << "; "
      << "tested on " << images_text(b.test_limit, "all 10,000")
      << " test digits placed at random in 40x40 (expanded) and transformed (affine: rotation "
      << "within 20 degrees, shear within 0.2, scale 0.8-1.2, translation within the frame). "
      << "CapsNet trains " << b.epochs << " epochs; the baseline at least as many, and on, up "
      << "to " << options.max_baseline_epochs() << ", until its expanded accuracy reaches CapsNet's. "
      << "The paper tested on affNIST itself after training to 99.23%. CapsNet has "
      << result.capsnet.parameters << " parameters; the baseline CNN, with 2x2 max pooling after "
      << "its first convolution to keep its size near CapsNet's as the paper's was, "
      << result.baseline.parameters << ".\n\nMachine: " << result.machine << ".\n\n"
      << "| model | epoch | expanded MNIST test accuracy (%) | affine test accuracy (%) | the "
         "paper's (expanded, affNIST) |\n|---|---|---|---|---|\n"
      << "| " << result.capsnet.label << " | " << caps.epoch << " | "
      << percent(caps.expanded_accuracy) << " | " << percent(caps.affine_accuracy) << " | "
      << paper(result.capsnet) << " |\n"
      << "| " << result.baseline.label << ", the epoch closest in expanded accuracy | "
      << match.epoch << " | " << percent(match.expanded_accuracy) << " | "
      << percent(match.affine_accuracy) << " | " << paper(result.baseline) << " |\n";
  if (!result.efficient.epochs.empty()) {
    const auto& e = result.efficient.epochs.back();
    doc << "| " << result.efficient.label << " (" << result.efficient.parameters
        << " parameters) | " << e.epoch << " | " << percent(e.expanded_accuracy) << " | "
        << percent(e.affine_accuracy) << " | not tested in its paper |\n";
  }
  doc << "\nEvery epoch:\n\n| model | epoch | expanded (%) | affine (%) |\n|---|---|---|---|\n";
  for (const auto* model : {&result.capsnet, &result.baseline, &result.efficient}) {
    for (const auto& e : model->epochs) {
      doc << "| " << model->label << " | " << e.epoch << " | " << percent(e.expanded_accuracy)
          << " | " << percent(e.affine_accuracy) << " |\n";
    }
  }
  return doc.str();
}

} // namespace capsnet
