#include "capsnet/engine/trainer.h"

#include "capsnet/data/dataset.h"
#include "capsnet/engine/progress.h"
#include "capsnet/engine/runtime.h"

#include <nlohmann/json.hpp>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
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

// splitmix64: decorrelates the seeds of (seed, epoch, step) streams.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix(seed ^ mix(static_cast<uint64_t>(epoch))));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

void set_learning_rate(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
}

void write_run_config(const std::string& run_dir, const TrainOptions& options, int threads,
                      int64_t train_size, int64_t test_size) {
  auto json = to_json(options);
  json["libtorch_version"] = TORCH_VERSION;
  json["threads_used"] = threads;
  json["train_size"] = train_size;
  json["test_size"] = test_size;
  std::ofstream out((fs::path(run_dir) / "config.json").string());
  out << json.dump(2) << "\n";
  if (!out) throw TrainingError(run_dir + "/config.json: cannot write");
}

void append_metrics(const std::string& run_dir, const nlohmann::json& row) {
  std::ofstream out((fs::path(run_dir) / "metrics.jsonl").string(), std::ios::app);
  out << row.dump() << "\n";
  if (!out) throw TrainingError(run_dir + "/metrics.jsonl: cannot write");
}

} // namespace

TrainReport train(const TrainOptions& options, const std::string& run_dir,
                  const TrainControl& control) {
  validate(options);
  const int threads = configure_runtime(options.threads);
  const auto device = resolve_device(options.device); // before anything is written
  std::ostream null_stream(nullptr);
  std::ostream& log = control.log ? *control.log : null_stream;

  const auto data_dir = options.data_dir.empty() ? default_data_dir(options.dataset)
                                                  : options.data_dir;
  auto train_data = load_dataset(data_dir, Split::kTrain, options.dataset, options.limit);
  auto test_data = load_dataset(data_dir, Split::kTest, options.dataset, options.test_limit);
  if (train_data.images.size(2) != options.model.image_size) {
    throw TrainingError(data_dir + ": images are " + std::to_string(train_data.images.size(2)) +
                        " pixels wide but the model expects " +
                        std::to_string(options.model.image_size));
  }

  if (train_data.num_classes != options.model.num_classes) {
    throw TrainingError(data_dir + ": the data set has " + std::to_string(train_data.num_classes) +
                        " classes but the model has " + std::to_string(options.model.num_classes));
  }

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
    write_run_config(run_dir, options, threads, train_data.size(), test_data.size());
  }
  // The whole data set lives on the training device (MNIST is 55 MB as bytes).
  model->to(device);
  for (auto* data : {&train_data, &test_data}) {
    data->images = data->images.to(device);
    data->labels = data->labels.to(device);
  }
  model->set_routing_impl(options.routing);
  const Precision precision = usable_precision(options.precision, log, device);
  model->set_precision(precision);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(options.lr));
  if (control.resume) load_optimizer_state(last_path, optimizer);

  const int64_t n = train_data.size();
  const int64_t steps = (n + options.batch_size - 1) / options.batch_size;
  if (control.resume && state.epoch < options.epochs) {
    log << "resuming " << run_dir << " at epoch " << state.epoch + 1 << ", step "
        << state.step_in_epoch << "/" << steps << "\n";
  }
  log << "training on " << n << " " << options.dataset << " images, testing on "
      << test_data.size() << "; batch " << options.batch_size << ", " << threads
      << " threads, preset " << options.preset << ", " << to_string(options.routing)
      << " routing, " << to_string(precision) << " on " << device.str() << "\n";
  ProgressPrinter progress(log, control.terminal);
  int64_t steps_this_call = 0;
  // lr(t) = lr * lr_decay^(t / steps_per_epoch), at the step about to be taken.
  auto learning_rate = [&] {
    return options.lr * std::pow(options.lr_decay, static_cast<double>(state.global_step) / steps);
  };
  auto stop_now = [&] {
    return (control.stop && control.stop->load()) ||
           (control.max_steps > 0 && steps_this_call >= control.max_steps);
  };

  for (; state.epoch < options.epochs; ++state.epoch) {
    const auto order = epoch_order(n, options.seed, state.epoch);
    model->train();
    for (; state.step_in_epoch < steps; ++state.step_in_epoch) {
      const auto start = std::chrono::steady_clock::now();
      const int64_t step = state.step_in_epoch;
      const int64_t begin = step * options.batch_size;
      const int64_t count = std::min(options.batch_size, n - begin);
      auto index = at::from_blob(const_cast<int64_t*>(order.data() + begin), {count}, at::kLong)
                       .to(device);
      std::mt19937_64 rng(mix(options.seed ^ mix(state.epoch * 1000003 + step + 1)));
      auto images = prepare_batch(train_data.images.index_select(0, index), options.shift,
                                  options.normalize, rng);
      auto labels = train_data.labels.index_select(0, index);

      set_learning_rate(optimizer, learning_rate());
      auto out = model->forward(images, options.mask == DecoderMask::kLabel ? labels : at::Tensor(),
                                options.recon_weight > 0);
      auto loss = capsnet_loss(out, images, labels, options);
      const double loss_value = loss.total.item<double>();
      if (!std::isfinite(loss_value)) {
        progress.finish();
        std::ostringstream message;
        message << "non-finite loss (" << loss_value << ") at epoch " << state.epoch + 1
                << ", step " << step + 1 << ": training stopped. ";
        if (fs::exists(last_path)) {
          message << "The last good checkpoint is " << last_path << ". ";
        }
        message << "Try a lower --lr (now " << options.lr << ").";
        throw TrainingError(message.str());
      }
      optimizer.zero_grad();
      loss.total.backward();
      optimizer.step();

      state.epoch_loss_sum += loss_value * count;
      state.epoch_correct += out.predictions.eq(labels).sum().item<int64_t>();
      state.epoch_seen += count;
      state.epoch_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++state.global_step;
      ++steps_this_call;
      const double rate = state.epoch_seen / std::max(state.epoch_seconds, 1e-9);
      const double images_left = static_cast<double>(n - begin - count) +
                                 static_cast<double>(options.epochs - state.epoch - 1) * n;
      progress.update(state.epoch + 1, options.epochs, step + 1, steps, rate,
                      state.epoch_loss_sum / state.epoch_seen,
                      static_cast<double>(state.epoch_correct) / state.epoch_seen,
                      images_left / std::max(rate, 1e-9));

      if (stop_now() && state.step_in_epoch + 1 < steps) {
        progress.finish();
        ++state.step_in_epoch;
        save_checkpoint(last_path, model, &optimizer, options, state);
        report.interrupted = true;
        report.last_checkpoint = last_path;
        return report;
      }
    }
    progress.finish();

    const auto eval = evaluate(model, test_data, options);
    const double train_accuracy = static_cast<double>(state.epoch_correct) / state.epoch_seen;
    const double lr = learning_rate();
    nlohmann::json row = {{"epoch", state.epoch + 1},
                          {"train_loss", state.epoch_loss_sum / state.epoch_seen},
                          {"train_accuracy", train_accuracy},
                          {"test_loss", eval.loss},
                          {"test_accuracy", eval.accuracy()},
                          {"test_errors", eval.errors()},
                          {"test_size", eval.total},
                          {"lr", lr},
                          {"seconds", state.epoch_seconds},
                          {"images_per_second", state.epoch_seen / state.epoch_seconds},
                          {"eval_seconds", eval.seconds}};
    append_metrics(run_dir, row);
    char line[256];
    std::snprintf(line, sizeof(line),
                  "epoch %ld/%ld: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% "
                  "(%ld errors) | %s, %.1f img/s",
                  static_cast<long>(state.epoch + 1), static_cast<long>(options.epochs),
                  state.epoch_loss_sum / state.epoch_seen, 100 * train_accuracy, eval.loss,
                  100 * eval.accuracy(), static_cast<long>(eval.errors()),
                  format_duration(state.epoch_seconds).c_str(),
                  state.epoch_seen / state.epoch_seconds);
    log << line << std::endl;

    const bool best = eval.accuracy() > state.best_accuracy;
    if (best) state.best_accuracy = eval.accuracy();
    TrainingState saved = state;
    saved.epoch = state.epoch + 1;
    saved.step_in_epoch = 0;
    saved.epoch_loss_sum = 0;
    saved.epoch_correct = 0;
    saved.epoch_seen = 0;
    saved.epoch_seconds = 0;
    save_checkpoint(last_path, model, &optimizer, options, saved);
    if (best) save_checkpoint(best_checkpoint_path(run_dir), model, &optimizer, options, saved);
    report.last_eval = eval;
    report.last_checkpoint = last_path;
    state = saved;
    --state.epoch; // the loop's increment moves to the next epoch

    if (stop_now() && saved.epoch < options.epochs) {
      state = saved;
      report.interrupted = true;
      return report;
    }
  }
  return report;
}

} // namespace capsnet
