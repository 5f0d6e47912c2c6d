#include "capsnet/recipes/run.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/io/atomic_file.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adam.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
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

void check_fits(const DatasetInfo& info, const Dataset& data, const std::string& dir,
                const TrainOptions& options) {
  const bool capsnet = options.model_kind == ModelKind::kCapsNet;
  const int64_t image_size = capsnet ? options.model.image_size : options.baseline.image_size;
  const int64_t classes = capsnet ? options.model.num_classes : options.baseline.num_classes;
  // Generated data sets make images of their own size from the files'.
  const int64_t side = info.source ? info.image_size : data.images.size(2);
  if (side != image_size) {
    throw TrainingError(dir + ": " + info.name + " images are " + std::to_string(side) +
                        " pixels wide but the model expects " + std::to_string(image_size));
  }
  if (data.num_classes != classes) {
    throw TrainingError(dir + ": the data set has " + std::to_string(data.num_classes) +
                        " classes but the model has " + std::to_string(classes));
  }
}

// flock on run_dir/.lock for as long as the run lasts; the kernel releases it
// when the process dies, however it dies. The file holds the owner's PID.
class RunLock {
 public:
  explicit RunLock(const std::string& run_dir) {
    const auto path = (fs::path(run_dir) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw TrainingError(path + ": cannot create the run's lock file");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {};
      const auto got = ::pread(fd_, pid, sizeof pid - 1, 0);
      ::close(fd_);
      throw TrainingError(run_dir + " is in use by another capsnet train (PID " +
                          std::string(pid, got > 0 ? static_cast<size_t>(got) : 0) +
                          "); wait for it to finish or stop it first");
    }
    const auto text = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) < 0) {
      // The lock holds without the PID; only the message of a second trainer suffers.
    }
  }
  ~RunLock() { ::close(fd_); } // releases the flock
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

// Rows of epochs after the checkpoint's (written before a crash that came
// before the checkpoint) are dropped, so that the resumed run writes each once.
void keep_metrics_up_to(const std::string& path, int64_t epochs) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  bool dropped = false;
  while (std::getline(in, line)) {
    int64_t epoch = 0;
    try {
      epoch = nlohmann::json::parse(line).at("epoch").get<int64_t>();
    } catch (const nlohmann::json::exception&) {
      dropped = true; // a torn or foreign line
      continue;
    }
    if (epoch > epochs) {
      dropped = true;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped) write_file_atomically(path, kept);
}

std::string data_of(const Dataset& train, const Dataset& test) {
  return "train: " + data_identity(train) + "; test: " + data_identity(test);
}

} // namespace

namespace {

// What every rank must agree on before training: the options that shape the
// run (not threads, paths or the device), the data, and where it resumes.
uint32_t run_digest(const TrainOptions& options, const std::string& data,
                    const TrainingState& state) {
  nlohmann::json j = options;
  for (const char* local : {"threads", "data_dir", "device", "eval_batch_size"}) j.erase(local);
  j["data"] = data;
  j["epoch"] = state.epoch;
  j["step"] = state.step_in_epoch;
  j["global_step"] = state.global_step;
  const auto text = j.dump();
  return crc32_of(text.data(), text.size());
}

} // namespace

// The run in run_dir as rank `group->rank()` of a data-parallel job, or
// alone when `group` is null.
TrainReport train_in_group(const TrainOptions& options, const std::string& run_dir,
                           const TrainControl& control, c10::Device device,
                           dist::ProcessGroup* group) {
  const int64_t rank = group ? group->rank() : 0;
  const int64_t world = group ? group->world_size() : 1;
  const bool speaks = rank == 0; // rank 0 alone writes run_dir and logs
  std::ostream null_stream(nullptr);
  std::ostream& out = control.log && speaks ? *control.log : null_stream;

  const auto data_dir =
      options.data_dir.empty() ? dataset_info(options.dataset).default_dir : options.data_dir;
  auto train_data = load_dataset(data_dir, Split::kTrain, options.dataset, options.limit);
  auto test_data = load_dataset(data_dir, Split::kTest, options.dataset, options.test_limit);
  const auto& info = dataset_info(options.dataset);
  check_fits(info, train_data, data_dir, options);

  TrainReport report;
  TrainingState& state = report.state;
  const bool capsnet = options.model_kind == ModelKind::kCapsNet;
  CapsNet model{nullptr};
  BaselineCnn baseline{nullptr};
  const auto last_path = last_checkpoint_path(run_dir);
  const auto metrics_path = (fs::path(run_dir) / "metrics.jsonl").string();
  const auto data = data_of(train_data, test_data);
  std::unique_ptr<RunLock> lock;
  if (control.resume) {
    if (!fs::is_directory(run_dir)) throw TrainingError(run_dir + ": no such run directory");
    if (speaks) lock = std::make_unique<RunLock>(run_dir);
    auto loaded = load_checkpoint(last_path);
    if (loaded.options.model_kind != options.model_kind || loaded.options.model != options.model ||
        nlohmann::json(loaded.options.baseline) != nlohmann::json(options.baseline)) {
      throw TrainingError(last_path + ": the checkpoint's architecture differs from the options "
                                      "given; resume with the checkpoint's own options");
    }
    if (!loaded.state.data.empty() && loaded.state.data != data && !control.force) {
      throw TrainingError(last_path + ": the run trained on other data (" + loaded.state.data +
                          ") than " + data_dir + " holds now (" + data +
                          "); resume with the run's data, or pass --force to go on with this");
    }
    model = loaded.model;
    baseline = loaded.baseline;
    state = loaded.state;
    state.data = data;
    if (speaks) keep_metrics_up_to(metrics_path, state.epoch);
  } else {
    if (speaks) {
      if (fs::exists(last_path)) {
        throw TrainingError(run_dir + " already holds a training run (last.pt); continue it "
                                      "with --resume " + run_dir + " or choose another --out");
      }
      std::error_code ec;
      if (fs::exists(run_dir) && !fs::is_directory(run_dir)) {
        throw TrainingError(run_dir + " is a file, not a directory; choose another --out");
      }
      if (fs::exists(run_dir) && !fs::is_empty(run_dir, ec) && !control.force) {
        throw TrainingError(run_dir + " is not empty; a new run needs an empty or new "
                                      "directory (choose another --out, or pass --force to "
                                      "train there, replacing its config.json and "
                                      "metrics.jsonl)");
      }
      fs::create_directories(run_dir);
      lock = std::make_unique<RunLock>(run_dir);
      // Rows left by a run that died before its first checkpoint belong to no run.
      fs::remove(metrics_path);
    }
    state.data = data;
    torch::manual_seed(options.seed);
    if (capsnet) {
      model = CapsNet(options.model);
    } else {
      baseline = BaselineCnn(options.baseline);
    }
    if (speaks) {
      nlohmann::json config = options;
      config["libtorch_version"] = TORCH_VERSION;
      config["threads_used"] = at::get_num_threads();
      config["world_size"] = world;
      config["train_size"] = train_data.size();
      config["test_size"] = test_data.size();
      write_file_atomically((fs::path(run_dir) / "config.json").string(),
                            config.dump(2) + "\n");
    }
  }
  if (group) group->check_same(run_digest(options, data, state), "options, data or checkpoint");
  torch::nn::Module& net = capsnet ? static_cast<torch::nn::Module&>(*model) : *baseline;
  net.to(device);
  Precision precision = Precision::kFp32;
  if (capsnet) {
    model->set_routing_impl(options.routing);
    precision = usable_precision(options.precision, out, device);
    model->set_precision(precision);
  } else if (options.precision != Precision::kFp32) {
    out << "the baseline CNN trains in fp32 (--precision applies to the CapsNet's convolution)\n";
  }
  torch::optim::Adam optimizer(net.parameters(), torch::optim::AdamOptions(options.lr));
  if (control.resume) load_optimizer_state(last_path, optimizer);
  if (group) {
    group->attach(net.parameters());
    group->broadcast_parameters();
  }

  const auto train_source =
      make_source(info, std::move(train_data), Split::kTrain, options.shift, options.normalize, device);
  const auto test_source =
      make_source(info, std::move(test_data), Split::kTest, options.shift, options.normalize, device);
  const ShardedSampler sampler(train_source->size(), options.batch_size, options.seed, rank, world);
  std::unique_ptr<Task> task;
  if (capsnet) {
    task = std::make_unique<CapsNetTask>(model, options);
  } else {
    task = std::make_unique<BaselineCnnTask>(baseline);
  }
  Trainer trainer(*task, *train_source, sampler, optimizer, group);
  trainer.schedule = {options.lr, options.lr_decay};
  trainer.evaluation = {test_source.get(), options.eval_batch_size};
  if (speaks) {
    trainer.checkpoints = {last_path, best_checkpoint_path(run_dir),
                           [&](const std::string& path, const TrainingState& at) {
                             save_checkpoint(path, net, &optimizer, options, at);
                           }};
  }
  RunLogger logger(out, control.terminal, speaks ? metrics_path : "");
  trainer.logger = speaks ? &logger : nullptr;
  trainer.stop = control.stop;
  trainer.max_steps = control.max_steps;
  trainer.time_limit_seconds = control.time_limit_seconds;

  if (control.resume && state.epoch < options.epochs) {
    std::ostringstream line;
    line << "resuming " << run_dir << " at epoch " << state.epoch + 1 << ", step "
         << state.step_in_epoch << "/" << sampler.steps_per_epoch();
    logger.message(line.str());
  }
  std::ostringstream line;
  line << "training on " << train_source->size() << " " << options.dataset
       << " images, testing on " << test_source->size() << "; batch " << options.batch_size;
  if (world > 1) {
    line << " (" << world << " processes of " << options.batch_size / world
         << (options.batch_size % world ? "-" + std::to_string(options.batch_size / world + 1) : "")
         << ", " << enum_name(group->backend()) << ")";
  }
  line << ", " << at::get_num_threads() << " threads, ";
  if (capsnet) {
    line << "preset " << options.preset << ", " << enum_name(options.routing) << " routing, ";
  } else {
    line << "baseline CNN (" << options.baseline.parameter_count() << " parameters), ";
  }
  line << enum_name(precision) << " on " << device.str();
  logger.message(line.str());

  const auto fit = trainer.fit(state, options.epochs);
  // Rank 0 writes the last checkpoint after the last collective: the others
  // wait for it here, so that its failure is theirs too.
  if (group) {
    std::vector<double> done{1.0};
    group->sum(done);
  }
  report.interrupted = fit.interrupted;
  report.time_limit_reached = fit.time_limit_reached;
  report.last_eval = fit.last_eval;
  report.last_checkpoint = last_path;
  return report;
}


TrainReport train(const TrainOptions& options, const std::string& run_dir,
                  const TrainControl& control) {
  validate(options);
  const auto& dist_options = control.distributed;
  const bool distributed = dist_options.world_size > 1;
  auto device = resolve_device(options.device); // before anything is written
  if (distributed && device.is_cuda()) {
    device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(dist_options.local_rank));
  }
  // Rendezvous first: a rank that fails later can then tell the others why.
  std::unique_ptr<dist::ProcessGroup> group;
  if (distributed) group = std::make_unique<dist::ProcessGroup>(dist_options, device);
  try {
    return train_in_group(options, run_dir, control, device, group.get());
  } catch (const dist::DistributedError&) {
    throw; // about another rank, which knows
  } catch (const AgreedTrainingError&) {
    throw; // every rank stops with it
  } catch (const std::exception& e) {
    if (group) group->report_failure(e.what());
    throw;
  }
}

} // namespace capsnet
