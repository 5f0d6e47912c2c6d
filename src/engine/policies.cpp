#include "capsnet/engine/policies.h"

#include "capsnet/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace capsnet {

double LearningRateSchedule::at(int64_t global_step, int64_t steps_per_epoch) const {
  return std::max(minimum, initial * std::pow(decay_per_epoch,
                                             static_cast<double>(global_step) / steps_per_epoch));
}

void LearningRateSchedule::apply(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

std::string not_learning_warning(double train_accuracy, int64_t examples,
                                 const at::Tensor& lengths) {
  if (!lengths.defined() || lengths.dim() != 2 || lengths.numel() == 0 || examples < 1) return "";
  const int64_t K = lengths.size(1);
  const double chance = 1.0 / static_cast<double>(K);
  // Within a point of chance, or within three standard errors of guessing
  // on a small epoch (4.7 points for 891 examples of 3 classes).
  const double band =
      std::max(0.01, 3 * std::sqrt(chance * (1 - chance) / static_cast<double>(examples)));
  if (train_accuracy > chance + band) return "";
  const auto sorted = std::get<0>(lengths.detach().to(at::kCPU, at::kDouble).flatten().sort());
  const int64_t n = sorted.numel();
  const double p10 = sorted[n / 10].item<double>(), p90 = sorted[(9 * n) / 10].item<double>();
  const double median = sorted[n / 2].item<double>();
  char line[640];
  if (p10 > 0.9) {
    std::snprintf(line, sizeof line,
                  "not learning: after epoch 1 the training accuracy (%.1f%%) is at chance for "
                  "%ld classes and the class capsules are saturated (median length %.3f), where "
                  "the margin loss has almost no gradient. Likely cause: W_ij too large for "
                  "these pictures (a background that is not black adds up over every primary "
                  "capsule). Try --calibrate-init true (the default), or a smaller --w-init-std "
                  "(e.g. 0.0001)",
                  100 * train_accuracy, static_cast<long>(K), median);
    return line;
  }
  if (p90 < 0.05) {
    std::snprintf(line, sizeof line,
                  "not learning: after epoch 1 the training accuracy (%.1f%%) is at chance for "
                  "%ld classes and the class capsules are all near 0 (median length %.3f). "
                  "Likely cause: W_ij too small for these pictures, or inputs that are all "
                  "alike. Try --calibrate-init true (the default), or a larger --w-init-std",
                  100 * train_accuracy, static_cast<long>(K), median);
    return line;
  }
  return "";
}

RunLogger::RunLogger(std::ostream& out, bool terminal, std::string metrics_path)
    : out_(out), progress_(out, terminal), metrics_path_(std::move(metrics_path)) {}

void RunLogger::message(const std::string& line) {
  progress_.finish();
  out_ << line << "\n";
}

void RunLogger::step(int64_t epoch, int64_t epochs, int64_t step, int64_t steps,
                     double images_per_second, double loss, double accuracy, double eta_seconds) {
  progress_.update(epoch, epochs, step, steps, images_per_second, loss, accuracy, eta_seconds);
}

EpochRecord EpochSummary::record() const {
  EpochRecord r;
  r.epoch = epoch;
  r.train_loss = train_loss;
  r.train_accuracy = train_accuracy;
  r.lr = lr;
  r.seconds = seconds;
  r.images_per_second = images_per_second;
  if (eval) {
    r.evaluated = true;
    r.test_loss = eval->loss;
    r.test_accuracy = eval->accuracy();
    r.test_errors = eval->errors();
    r.test_size = eval->total;
    r.eval_seconds = eval->seconds;
  }
  if (validation) {
    r.extra["val_loss"] = validation->loss;
    r.extra["val_accuracy"] = validation->accuracy();
    r.extra["val_errors"] = static_cast<double>(validation->errors());
    r.extra["val_size"] = static_cast<double>(validation->total);
  }
  if (best) r.extra["best"] = 1;
  for (const auto& [name, value] : extra) r.extra[name] = value;
  return r;
}

void RunLogger::epoch(const EpochSummary& s) {
  progress_.finish();
  char line[384];
  int used = std::snprintf(line, sizeof(line), "epoch %ld/%ld: train loss %.4f acc %.2f%%",
                           static_cast<long>(s.epoch), static_cast<long>(s.epochs), s.train_loss,
                           100 * s.train_accuracy);
  if (s.validation) {
    used += std::snprintf(line + used, sizeof(line) - used, " | val acc %.2f%% (%ld errors)",
                          100 * s.validation->accuracy(),
                          static_cast<long>(s.validation->errors()));
  }
  if (s.eval) {
    used += std::snprintf(line + used, sizeof(line) - used,
                          " | test loss %.4f acc %.2f%% (%ld errors)", s.eval->loss,
                          100 * s.eval->accuracy(), static_cast<long>(s.eval->errors()));
  }
  used += std::snprintf(line + used, sizeof(line) - used, " | %s, %.1f img/s",
                        format_duration(s.seconds).c_str(), s.images_per_second);
  const auto record = s.record();
  const auto exposed = record.extra.find("allreduce_exposed_seconds");
  const auto hidden = record.extra.find("allreduce_hidden_fraction");
  if (exposed != record.extra.end() && hidden != record.extra.end() &&
      used < static_cast<int>(sizeof(line))) {
    std::snprintf(line + used, sizeof(line) - used, " | all-reduce %.0f ms/step exposed, %.0f%% hidden",
                  1000 * exposed->second, 100 * hidden->second);
  }
  if (!metrics_path_.empty()) {
    append_file_atomically(metrics_path_, nlohmann::json(record).dump() + "\n");
  }
  out_ << line << std::endl;
}

} // namespace capsnet
