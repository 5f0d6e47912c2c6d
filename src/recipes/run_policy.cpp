// The run policy (recipes/run.h): what may change on resume, and how a run's
// options come from a preset, the options given and a checkpoint. `capsnet
// train`, the experiments and the help texts all ask here.

#include "capsnet/recipes/run.h"

#include "capsnet/data/registry.h"

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace capsnet {

namespace fs = std::filesystem;

TrainOptions resumed_options(const TrainOptions& run, const TrainOptions& asked) {
  auto out = run;
  // How long, where and how fast: none of these changes what a step computes
  // beyond rounding (routing, precision and conv are the same function).
  out.epochs = asked.epochs;
  out.threads = asked.threads;
  out.data_dir = asked.data_dir;
  out.eval_batch_size = asked.eval_batch_size;
  out.routing = asked.routing;
  out.precision = asked.precision;
  out.conv = asked.conv;
  out.device = asked.device;
  out.folder.cache_mb = asked.folder.cache_mb;
  out.folder.loader_threads = asked.folder.loader_threads;
  return out;
}

const std::vector<std::string>& resume_may_change() {
  static const std::vector<std::string> names = {
      "--epochs", "--threads", "--data",   "--eval-batch-size", "--routing",
      "--precision", "--conv", "--device", "--cache-mb",        "--loader-threads"};
  return names;
}

std::string resume_may_change_text() {
  const auto& names = resume_may_change();
  std::string text;
  for (size_t k = 0; k < names.size(); ++k) {
    text += (k == 0 ? "" : k + 1 == names.size() ? " and " : ", ") + names[k];
  }
  return text;
}

namespace {

bool may_change(const std::string& name) {
  const auto& names = resume_may_change();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string default_run_dir(const TrainOptions& options) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", std::localtime(&now));
  return "runs/" + options.dataset + "-" + options.preset + "-" + stamp;
}

// --resume: the checkpoint's options, with the given ones that may change.
TrainOptions resume_options(const RunRequest& request) {
  const auto run = load_checkpoint(last_checkpoint_path(request.resume)).options;
  auto asked = run;
  for (const auto& option : request.given) {
    if (!may_change(option.name)) {
      throw std::invalid_argument(option.name + " cannot change when resuming: the run keeps "
                                                "the options in its config.json (" +
                                  resume_may_change_text() + " may change)");
    }
    option.apply(asked);
  }
  const auto options = resumed_options(run, asked);
  TORCH_INTERNAL_ASSERT(nlohmann::json(options) == nlohmann::json(asked),
                        "resume_may_change() names an option that resumed_options() does not take");
  return options;
}

// --resume-if-exists where the run has last.pt: the same request as the run's
// first start, so what it gives must be what the run has, but for the options
// that may change.
TrainOptions restart_options(const RunRequest& request) {
  auto options = load_checkpoint(last_checkpoint_path(request.out)).options;
  if (request.preset != options.preset) {
    throw std::invalid_argument("--preset is " + request.preset + " but the run in " +
                                request.out + " was started with " + options.preset +
                                "; give the run's own options, or choose another --out");
  }
  for (const auto& option : request.given) {
    if (may_change(option.name)) {
      option.apply(options);
      continue;
    }
    auto asked = options;
    option.apply(asked);
    const bool per_process = option.name == "--batch-size";
    if (per_process) asked.batch_size *= request.world_size;
    if (nlohmann::json(asked) != nlohmann::json(options)) {
      throw std::invalid_argument(
          option.name + " differs from the run in " + request.out + " (its config.json" +
          (per_process ? "; --batch-size is per process, times " +
                             std::to_string(request.world_size) + " processes"
                       : std::string()) +
          "); --resume-if-exists continues that run with its own options: give the same "
          "ones, or choose another --out");
    }
  }
  return options;
}

} // namespace

ResolvedRun resolve_run(const RunRequest& request) {
  if (!request.resume.empty()) return {resume_options(request), request.resume, true};
  if (request.resume_if_exists && !request.out.empty() &&
      fs::exists(last_checkpoint_path(request.out))) {
    return {restart_options(request), request.out, true};
  }
  auto options = preset_options(request.preset);
  for (const auto& option : request.given) option.apply(options);
  // A given --batch-size is per process; the run's batch is global.
  options.batch_size *= request.world_size;
  return {options, request.out.empty() ? default_run_dir(options) : request.out, false};
}

std::string best_text(const TrainingState& state, const TrainOptions& options) {
  std::ostringstream text;
  if (options.validation_split > 0) {
    text << "best.pt is epoch " << state.best_epoch << ", chosen on the validation split ("
         << 100 * state.best_accuracy << "%), test accuracy " << 100 * state.best_test_accuracy
         << "%";
  } else {
    text << "best test accuracy " << 100 * state.best_accuracy
         << "% (best.pt chosen on the test set: optimistic; --validation-split N chooses on "
            "held-out training examples)";
  }
  return text.str();
}

RunOutcome run_outcome(const TrainReport& report, const TrainOptions& options,
                       const std::string& run_dir, double time_limit_seconds) {
  std::ostringstream text;
  const auto& state = report.state;
  if (report.time_limit_reached) {
    text << "time limit of " << time_limit_seconds << " s reached: stopped ";
    if (report.interrupted) {
      text << "mid-epoch at epoch " << state.epoch + 1 << ", step " << state.step_in_epoch
           << " (no epoch had finished to judge by)";
    } else {
      text << "after epoch " << state.epoch << " of " << options.epochs;
    }
    text << "; checkpoint " << report.last_checkpoint;
    if (state.epoch > 0) text << ", " << best_text(state, options);
    text << "\ncontinue with: capsnet train --resume " << run_dir << "\n";
    return {text.str(), false};
  }
  if (report.interrupted) {
    text << "interrupted at epoch " << state.epoch + 1 << ", step " << state.step_in_epoch
         << "; checkpoint written to " << report.last_checkpoint
         << "\nresume with: capsnet train --resume " << run_dir << "\n";
    return {text.str(), true};
  }
  text << "done: " << best_text(state, options) << "; checkpoints "
       << last_checkpoint_path(run_dir) << " and " << best_checkpoint_path(run_dir) << "\n";
  return {text.str(), false};
}

} // namespace capsnet
