#include "capsnet/recipes/run.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/adam.h"
#include "capsnet/engine/epoch_record.h"
#include "capsnet/registry/models.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/layers/batch_norm.h"

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
      epoch = nlohmann::json::parse(line).get<EpochRecord>().epoch;
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
  j["folder"].erase("cache_mb"); // how a rank holds the data, not what it is
  j["folder"].erase("loader_threads");
  j["data"] = data;
  j["epoch"] = state.epoch;
  j["step"] = state.step_in_epoch;
  j["global_step"] = state.global_step;
  const auto text = j.dump();
  return crc32_of(text.data(), text.size());
}

} // namespace

namespace {

// Both splits of the run's data, what they are and the shape of their examples.
struct RunData {
  const DatasetInfo* info = nullptr;
  std::string dir;
  Dataset train, test;
  int64_t train_size = 0; // before train moves into its source
  std::string identity; // data_of(): checkpoints record it
  DataShape shape;
};

// `trained`: the shape a resumed run's checkpoint recorded (a folder's
// size, channels and test split are kept).
RunData load_run_data(const TrainOptions& options, const DataShape* trained, std::ostream& log) {
  RunData data;
  data.info = &dataset_info(options.dataset);
  data.dir = options.data_dir.empty() ? data.info->default_dir : options.data_dir;
  auto request = data_request(options, Split::kTrain, "", trained);
  request.log = &log;
  data.train = load_dataset(options.dataset, request);
  data.shape = data_shape(*data.info, data.train, options.folder.crop);
  // A resumed run holds out what its checkpoint recorded.
  data.shape.validation =
      trained ? trained->validation
              : stratified_holdout(data.train.labels, options.validation_split, options.seed);
  request = data_request(options, Split::kTest, "", trained ? trained : &data.shape);
  request.log = &log;
  data.test = load_dataset(options.dataset, request);
  data.identity = data_of(data.train, data.test);
  data.train_size = data.train.size();
  return data;
}

std::string shape_text(const DataShape& shape) {
  return nlohmann::json{{"image_size", shape.image_size},
                        {"channels", shape.channels},
                        {"classes", shape.classes},
                        {"labels_per_image", shape.labels_per_image}}
      .dump();
}

// What a run starts from: a checkpoint's network and state, or fresh ones.
struct RunStart {
  ModulePtr network;
  TrainingState state;
  std::unique_ptr<RunLock> lock; // rank 0's
};

RunStart resume_run(const TrainOptions& options, const std::string& run_dir,
                    const TrainControl& control, const RunData& data, bool speaks,
                    const LoadedCheckpoint& loaded) {
  RunStart start;
  if (speaks) start.lock = std::make_unique<RunLock>(run_dir);
  const auto last_path = last_checkpoint_path(run_dir);
  const auto& entry = model_info(options.model_name);
  if (loaded.options.model_name != options.model_name ||
      (entry.config && entry.config(loaded.options) != entry.config(options))) {
    throw TrainingError(last_path + ": the checkpoint's architecture differs from the options "
                                    "given; resume with the checkpoint's own options");
  }
  if (!(loaded.shape == data.shape)) {
    throw TrainingError(data.dir + ": " + options.dataset + " examples are " +
                        shape_text(data.shape) + " but " + last_path + " was built for " +
                        shape_text(loaded.shape));
  }
  if (!loaded.shape.class_names.empty() && loaded.shape.class_names != data.shape.class_names) {
    throw TrainingError(data.dir + ": the classes are not those " + last_path +
                        " was trained on; resume with the run's own data");
  }
  if (!loaded.state.data.empty() && loaded.state.data != data.identity && !control.force) {
    throw TrainingError(last_path + ": the run trained on other data (" + loaded.state.data +
                        ") than " + data.dir + " holds now (" + data.identity +
                        "); resume with the run's data, or pass --force to go on with this");
  }
  start.network = loaded.network;
  start.state = loaded.state;
  start.state.data = data.identity;
  if (speaks) keep_metrics_up_to((fs::path(run_dir) / "metrics.jsonl").string(), start.state.epoch);
  return start;
}

// Whether run_dir holds nothing but what a run leaves before its first
// checkpoint: config.json, metrics.jsonl, the lock and temporary files of
// atomic writes (name.XXXXXXXXXXXXXXXX.tmp).
bool holds_only_unfinished_run(const std::string& run_dir) {
  for (const auto& entry : fs::directory_iterator(run_dir)) {
    const auto name = entry.path().filename().string();
    const bool temporary = name.size() > 21 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if (name != "config.json" && name != "metrics.jsonl" && name != ".lock" && !temporary) {
      return false;
    }
  }
  return true;
}

// A new run's directory: empty or new (or control.force), locked, without
// metrics rows of a run that died before its first checkpoint.
std::unique_ptr<RunLock> claim_run_dir(const std::string& run_dir, const TrainControl& control) {
  if (fs::exists(last_checkpoint_path(run_dir))) {
    throw TrainingError(run_dir + " already holds a training run (last.pt); continue it "
                                  "with --resume " + run_dir + " or choose another --out");
  }
  std::error_code ec;
  if (fs::exists(run_dir) && !fs::is_directory(run_dir)) {
    throw TrainingError(run_dir + " is a file, not a directory; choose another --out");
  }
  if (fs::exists(run_dir) && !fs::is_empty(run_dir, ec) && !control.force &&
      !(control.replace_unfinished && holds_only_unfinished_run(run_dir))) {
    throw TrainingError(run_dir + " is not empty; a new run needs an empty or new "
                                  "directory (choose another --out, or pass --force to "
                                  "train there, replacing its config.json and "
                                  "metrics.jsonl)");
  }
  fs::create_directories(run_dir);
  auto lock = std::make_unique<RunLock>(run_dir);
  fs::remove(fs::path(run_dir) / "metrics.jsonl");
  return lock;
}

// `calibrate`: the new network's data-dependent start, which may record what
// it set in `options` before config.json is written.
RunStart start_run(const TrainOptions& options, const std::string& run_dir,
                   const TrainControl& control, const RunData& data, bool speaks, int64_t world,
                   const std::function<void(torch::nn::Module&)>& calibrate) {
  RunStart start;
  if (speaks) start.lock = claim_run_dir(run_dir, control);
  start.state.data = data.identity;
  torch::manual_seed(options.seed);
  try {
    start.network = model_info(options.model_name).build(data.shape, options);
  } catch (const TrainingError& e) {
    throw TrainingError(data.dir + ": " + options.dataset + ": " + e.what());
  }
  calibrate(*start.network);
  if (speaks) {
    nlohmann::json config = options;
    config["libtorch_version"] = TORCH_VERSION;
    config["threads_used"] = at::get_num_threads();
    config["world_size"] = world;
    config["train_size"] = data.train_size;
    config["test_size"] = data.test.size();
    auto shape = nlohmann::json(data.shape);
    shape.erase("test_files");  // in the checkpoints; config.json stays readable
    shape.erase("validation");
    config["data_shape"] = shape;
    write_file_atomically((fs::path(run_dir) / "config.json").string(), config.dump(2) + "\n");
  }
  return start;
}

// The line that opens the run's log.
std::string run_banner(const TrainOptions& options, const BatchSource& train,
                       const BatchSource* validation, const BatchSource& test,
                       const dist::ProcessGroup* group, Precision precision, c10::Device device) {
  std::ostringstream line;
  line << "training on " << train.size() << " " << options.dataset << " images, ";
  if (validation) line << "choosing best.pt on " << validation->size() << " held out, ";
  line << "testing on " << test.size() << "; batch " << options.batch_size;
  const int64_t world = group ? group->world_size() : 1;
  if (world > 1) {
    line << " (" << world << " processes of " << options.batch_size / world
         << (options.batch_size % world ? "-" + std::to_string(options.batch_size / world + 1) : "")
         << ", " << enum_name(group->backend()) << ")";
  }
  line << ", " << at::get_num_threads() << " threads, "
       << model_info(options.model_name).summary(options) << ", " << enum_name(precision) << " on "
       << device.str();
  return line.str();
}

// The precision the run computes in: the options' where the model has a bf16
// path and the device supports it, else fp32 (saying so).
Precision run_precision(const ModelInfo& model, const TrainOptions& options, std::ostream& out,
                        c10::Device device) {
  if (model.offers(Capability::kBf16)) return usable_precision(options.precision, out, device);
  if (options.precision != Precision::kFp32) {
    out << "model '" << model.name << "' trains in fp32 (it has no bf16 path; --precision "
        << enum_name(options.precision) << " applies to " << models_offering(Capability::kBf16)
        << ")\n";
  }
  return Precision::kFp32;
}

// The training examples and, with --validation-split, the held-out ones: two
// views of one source, renumbered.
struct TrainSources {
  std::shared_ptr<const BatchSource> train, validation;
};

TrainSources split_training_source(std::shared_ptr<const BatchSource> whole,
                                   const std::vector<int64_t>& held, const std::string& where) {
  if (held.empty()) return {std::move(whole), nullptr};
  if (held.back() >= whole->size()) {
    throw TrainingError(where + ": the recorded validation split names example " +
                        std::to_string(held.back()) + " of " + std::to_string(whole->size()) +
                        " training examples; resume with the run's own data");
  }
  TrainSources sources;
  sources.train = std::make_shared<SubsetSource>(whole, complement(whole->size(), held));
  sources.validation = std::make_shared<SubsetSource>(std::move(whole), held);
  return sources;
}

// A new run's data-dependent start (ModelInfo::calibrate) on the batch the
// first step trains on; what it sets goes into `options`.
void calibrate_start(torch::nn::Module& network, TrainOptions& options, const BatchSource& train,
                     const EpochSampler& sampler, std::ostream& log) {
  const auto& model = model_info(options.model_name);
  if (!model.calibrate || !options.calibrate_init) return;
  auto rng = sampler.step_rng(0, 0); // a copy: the first step's own stream is untouched
  const auto indices = sampler.global_indices(0, 0);
  const auto batch = train.get(indices.narrow(0, 0, std::min<int64_t>(32, indices.size(0))), &rng);
  const auto line = model.calibrate(network, options, batch.images.to(at::kCPU));
  if (!line.empty()) log << line << "\n";
}

// Rank 0's weights (after the calibration) to every rank; batch norms
// normalise by the global batch's statistics: N ranks of B images train as
// one process of N * B does.
void join_group(dist::ProcessGroup& group, torch::nn::Module& net) {
  group.attach(net.parameters());
  group.broadcast_parameters();
  set_batch_norm_reduce(net, group.differentiable_sum());
}

} // namespace

// The run in run_dir as rank `group->rank()` of a data-parallel job, or
// alone when `group` is null.
TrainReport train_in_group(const TrainOptions& given, const std::string& run_dir,
                           const TrainControl& control, c10::Device device,
                           dist::ProcessGroup* group) {
  const int64_t rank = group ? group->rank() : 0;
  const int64_t world = group ? group->world_size() : 1;
  const bool speaks = rank == 0; // rank 0 alone writes run_dir and logs
  std::ostream null_stream(nullptr);
  std::ostream& out = control.log && speaks ? *control.log : null_stream;

  std::unique_ptr<LoadedCheckpoint> loaded;
  if (control.resume) {
    if (!fs::is_directory(run_dir)) throw TrainingError(run_dir + ": no such run directory");
    loaded = std::make_unique<LoadedCheckpoint>(load_checkpoint(last_checkpoint_path(run_dir)));
  }
  auto data = load_run_data(given, loaded ? &loaded->shape : nullptr, out);
  // The network takes the data's size, channels and classes; a resumed run
  // keeps the checkpoint's preparation (statistics, split).
  auto options = loaded ? given : fitted_to(given, data.shape);
  const auto& shape = loaded ? loaded->shape : data.shape;
  const auto last_path = last_checkpoint_path(run_dir);
  const auto prepared = source_options(options, shape);
  const auto sources = split_training_source(
      make_source(*data.info, std::move(data.train), Split::kTrain, prepared, device),
      shape.validation, last_path);
  const auto& train_source = sources.train;
  const ShardedSampler sampler(train_source->size(), options.batch_size, options.seed, rank, world);
  auto start = loaded ? resume_run(options, run_dir, control, data, speaks, *loaded)
                      : start_run(options, run_dir, control, data, speaks, world,
                                  [&](torch::nn::Module& network) {
                                    calibrate_start(network, options, *train_source, sampler, out);
                                  });
  TrainReport report;
  report.state = start.state;
  if (group) {
    group->check_same(run_digest(options, data.identity, report.state),
                      "options, data or checkpoint");
  }
  const auto& model = model_info(options.model_name);
  torch::nn::Module& net = *start.network;
  net.to(device);
  auto task = model.task(start.network, options);
  const auto precision = run_precision(model, options, out, device);
  task->set_execution(options.routing, precision, options.conv);
  if (options.conv != ConvAlgo::kAuto && !model.offers(Capability::kConvAlgo)) {
    out << "model '" << model.name << "' ignores --conv " << enum_name(options.conv)
        << " (it chooses how capsnet's convolutions run)\n";
  }
  Adam optimizer(net.parameters(), torch::optim::AdamOptions(options.lr));
  if (control.resume) load_optimizer_state(last_path, optimizer);

  const auto test_source =
      make_source(*data.info, std::move(data.test), Split::kTest, prepared, device);
  Trainer trainer(*task, *train_source, sampler, optimizer, group);
  trainer.schedule = {options.lr, options.lr_decay, options.lr_min};
  trainer.evaluation = {test_source.get(), options.eval_batch_size, sources.validation.get()};
  trainer.warn_if_not_learning = model.offers(Capability::kCapsules);
  trainer.batch_norm.images = options.precise_bn_images;
  if (speaks) {
    trainer.checkpoints = {last_path, best_checkpoint_path(run_dir),
                           [&](const std::string& path, const TrainingState& at) {
                             save_checkpoint(path, net, &optimizer, options, shape, at);
                           }};
  }
  RunLogger logger(out, control.terminal,
                   speaks ? (fs::path(run_dir) / "metrics.jsonl").string() : "");
  trainer.logger = speaks ? &logger : nullptr;
  trainer.stop = control.stop;
  trainer.max_steps = control.max_steps;
  trainer.time_limit_seconds = control.time_limit_seconds;
  if (use_cuda_graph(control.cuda_graph, device, world)) {
    trainer.graph = make_cuda_graph(device);
    logger.message("training steps run as a CUDA graph after 3 eager ones (--cuda-graph)");
  }

  if (control.resume && report.state.epoch < options.epochs) {
    std::ostringstream line;
    line << "resuming " << run_dir << " at epoch " << report.state.epoch + 1 << ", step "
         << report.state.step_in_epoch << "/" << sampler.steps_per_epoch();
    logger.message(line.str());
  }
  logger.message(run_banner(options, *train_source, sources.validation.get(), *test_source, group,
                            precision, device));
  if (group) join_group(*group, net);

  const auto fit = trainer.fit(report.state, options.epochs);
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
  // Refuses --cuda-graph on where no graph can run, before anything is written.
  use_cuda_graph(control.cuda_graph, device, dist_options.world_size);
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
