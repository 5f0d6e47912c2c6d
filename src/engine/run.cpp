#include "capsnet/engine/run.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/io/atomic_file.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adam.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <filesystem>
#include <sstream>

namespace capsnet {

namespace fs = std::filesystem;

std::string last_checkpoint_path(const std::string& run_dir) {
  return (fs::path(run_dir) / "last.pt").string();
}

std::string best_checkpoint_path(const std::string& run_dir) {
  return (fs::path(run_dir) / "best.pt").string();
}

namespace {

void check_fits(const Dataset& data, const std::string& dir, const CapsNetConfig& model) {
  if (data.images.size(2) != model.image_size) {
    throw TrainingError(dir + ": images are " + std::to_string(data.images.size(2)) +
                        " pixels wide but the model expects " + std::to_string(model.image_size));
  }
  if (data.num_classes != model.num_classes) {
    throw TrainingError(dir + ": the data set has " + std::to_string(data.num_classes) +
                        " classes but the model has " + std::to_string(model.num_classes));
  }
}

} // namespace

TrainReport train(const TrainOptions& options, const std::string& run_dir,
                  const TrainControl& control) {
  validate(options);
  const auto device = resolve_device(options.device); // before anything is written
  std::ostream null_stream(nullptr);
  std::ostream& out = control.log ? *control.log : null_stream;

  const auto data_dir =
      options.data_dir.empty() ? dataset_info(options.dataset).default_dir : options.data_dir;
  auto train_data = load_dataset(data_dir, Split::kTrain, options.dataset, options.limit);
  auto test_data = load_dataset(data_dir, Split::kTest, options.dataset, options.test_limit);
  check_fits(train_data, data_dir, options.model);

  TrainReport report;
  TrainingState& state = report.state;
  CapsNet model{nullptr};
  const auto last_path = last_checkpoint_path(run_dir);
  if (control.resume) {
    auto loaded = load_checkpoint(last_path);
    if (loaded.options.model != options.model) {
      throw TrainingError(last_path + ": the checkpoint's architecture differs from the options "
                                      "given; resume with the checkpoint's own options");
    }
    model = loaded.model;
    state = loaded.state;
  } else {
    if (fs::exists(last_path)) {
      throw TrainingError(run_dir + " already holds a training run (last.pt); continue it with "
                                    "--resume " + run_dir + " or choose another --out");
    }
    fs::create_directories(run_dir);
    // Rows left by a run that died before its first checkpoint belong to no run.
    fs::remove(fs::path(run_dir) / "metrics.jsonl");
    torch::manual_seed(options.seed);
    model = CapsNet(options.model);
    nlohmann::json config = options;
    config["libtorch_version"] = TORCH_VERSION;
    config["threads_used"] = at::get_num_threads();
    config["train_size"] = train_data.size();
    config["test_size"] = test_data.size();
    write_file_atomically((fs::path(run_dir) / "config.json").string(), config.dump(2) + "\n");
  }
  model->to(device);
  model->set_routing_impl(options.routing);
  const Precision precision = usable_precision(options.precision, out, device);
  model->set_precision(precision);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(options.lr));
  if (control.resume) load_optimizer_state(last_path, optimizer);

  const DatasetSource train_source(std::move(train_data), options.shift, options.normalize, device);
  const DatasetSource test_source(std::move(test_data), /*max_shift=*/0, options.normalize, device);
  const EpochSampler sampler(train_source.size(), options.batch_size, options.seed);
  CapsNetTask task(model, options);
  Trainer trainer(task, train_source, sampler, optimizer);
  trainer.schedule = {options.lr, options.lr_decay};
  trainer.evaluation = {&test_source, options.eval_batch_size};
  trainer.checkpoints = {last_path, best_checkpoint_path(run_dir),
                         [&](const std::string& path, const TrainingState& at) {
                           save_checkpoint(path, model, &optimizer, options, at);
                         }};
  RunLogger logger(out, control.terminal, (fs::path(run_dir) / "metrics.jsonl").string());
  trainer.logger = &logger;
  trainer.stop = control.stop;
  trainer.max_steps = control.max_steps;

  if (control.resume && state.epoch < options.epochs) {
    std::ostringstream line;
    line << "resuming " << run_dir << " at epoch " << state.epoch + 1 << ", step "
         << state.step_in_epoch << "/" << sampler.steps_per_epoch();
    logger.message(line.str());
  }
  std::ostringstream line;
  line << "training on " << train_source.size() << " " << options.dataset << " images, testing on "
       << test_source.size() << "; batch " << options.batch_size << ", " << at::get_num_threads()
       << " threads, preset " << options.preset << ", " << enum_name(options.routing)
       << " routing, " << enum_name(precision) << " on " << device.str();
  logger.message(line.str());

  const auto fit = trainer.fit(state, options.epochs);
  report.interrupted = fit.interrupted;
  report.last_eval = fit.last_eval;
  report.last_checkpoint = last_path;
  return report;
}

} // namespace capsnet
