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
  for (const auto& [name, value] : extra) r.extra[name] = value;
  return r;
}

void RunLogger::epoch(const EpochSummary& s) {
  progress_.finish();
  char line[384];
  int used = std::snprintf(line, sizeof(line), "epoch %ld/%ld: train loss %.4f acc %.2f%%",
                           static_cast<long>(s.epoch), static_cast<long>(s.epochs), s.train_loss,
                           100 * s.train_accuracy);
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
