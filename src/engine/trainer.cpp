#include "capsnet/engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

namespace capsnet {

Trainer::Trainer(Task& task, const BatchSource& data, const EpochSampler& sampler,
                 torch::optim::Optimizer& optimizer, Replicas* replicas)
    : task_(task), data_(data), sampler_(sampler), replicas_(replicas ? *replicas : single_),
      step_(task, optimizer, replicas) {}

bool Trainer::stop_requested(int64_t steps_this_call) const {
  return (stop && stop->load()) || (max_steps > 0 && steps_this_call >= max_steps) ||
         past_time_limit();
}

double Trainer::seconds_in_fit() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - fit_start_).count();
}

bool Trainer::past_time_limit() const {
  return time_limit_seconds > 0 && seconds_in_fit() >= time_limit_seconds;
}

bool Trainer::next_epoch_overruns(double longest_epoch) {
  const bool mine = time_limit_seconds > 0 && seconds_in_fit() + longest_epoch > time_limit_seconds;
  if (replicas_.world_size() == 1) return mine;
  // Every rank takes part at every boundary, whatever its own limit, so that
  // the ranks' collectives stay in step.
  std::vector<double> votes = {mine ? 1.0 : 0.0};
  replicas_.sum(votes);
  return votes[0] > 0;
}

FitResult Trainer::fit(TrainingState& state, int64_t epochs) {
  TrainLogger& log = logger ? *logger : silent_;
  const int64_t steps = sampler_.steps_per_epoch();
  const int64_t n = sampler_.size();
  FitResult result;
  int64_t steps_this_call = 0;
  auto save = [&](const std::string& path) {
    if (checkpoints.save && !path.empty()) checkpoints.save(path, state);
  };
  bool saved = false; // last.pt already holds `state`
  fit_start_ = std::chrono::steady_clock::now();
  double longest_epoch = 0; // of this call, from its first step to its checkpoints
  auto epoch_start = fit_start_;

  while (state.epoch < epochs) {
    if (longest_epoch > 0 && next_epoch_overruns(longest_epoch)) {
      log.end_progress();
      result.time_limit_reached = true;
      return result; // last.pt was written at the end of the epoch
    }
    epoch_start = std::chrono::steady_clock::now();
    task_.module().train();
    for (; state.step_in_epoch < steps; ++state.step_in_epoch) {
      const bool alone = replicas_.world_size() == 1;
      if (alone && stop_requested(steps_this_call)) {
        if (!saved) save(checkpoints.last_path);
        result.interrupted = true;
        result.time_limit_reached = past_time_limit();
        return result;
      }
      const auto start = std::chrono::steady_clock::now();
      const int64_t step = state.step_in_epoch;
      const double lr = schedule.at(state.global_step, steps);
      LearningRateSchedule::apply(step_.optimizer(), lr);
      // The global batch with its augmentation, as one process would draw it;
      // this rank trains on its slice.
      auto rng = sampler_.step_rng(state.epoch, step);
      const auto global = data_.get(sampler_.global_indices(state.epoch, step), &rng);
      const auto [first, count] = sampler_.shard(global.size());
      const auto batch = global.narrow(first, count);
      const bool stopping = !alone && stop_requested(steps_this_call);
      TaskOutput out;
      double loss = 0;
      int64_t correct = 0;
      if (count > 0 && !stopping) {
        out = step_.forward(batch);
        loss = out.loss.item<double>();
        correct = count_correct(out.scores.detach(), batch.labels);
      }
      // What every rank must agree on before backward: stop, a non-finite
      // loss anywhere, and the global batch's loss and accuracy.
      std::vector<double> agreed = {stopping ? 1.0 : 0.0, std::isfinite(loss) ? 0.0 : 1.0,
                                    loss * count, static_cast<double>(correct),
                                    static_cast<double>(count)};
      if (!alone) replicas_.sum(agreed);
      if (agreed[0] > 0) {
        if (!saved) save(checkpoints.last_path);
        result.interrupted = true;
        result.time_limit_reached = past_time_limit();
        return result;
      }
      if (agreed[1] > 0) {
        log.end_progress();
        std::ostringstream message;
        if (std::isfinite(loss)) {
          message << "non-finite loss on another rank";
        } else {
          message << "non-finite loss (" << loss << ")";
        }
        message << " at epoch " << state.epoch + 1 << ", step " << step + 1
                << ": training stopped. ";
        if (checkpoints.save && !checkpoints.last_path.empty()) {
          message << "The last good checkpoint is " << checkpoints.last_path << ". ";
        }
        message << "Try a lower learning rate (now " << schedule.initial << ", --lr).";
        throw AgreedTrainingError(message.str());
      }
      saved = false;
      step_.update(out, agreed[4] > 0 ? count / agreed[4] : 0.0);
      const auto global_count = static_cast<int64_t>(agreed[4]);
      state.epoch_loss_sum += agreed[2];
      state.epoch_correct += static_cast<int64_t>(agreed[3]);
      state.epoch_seen += global_count;
      state.epoch_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++state.global_step;
      ++steps_this_call;
      const double rate = state.epoch_seen / std::max(state.epoch_seconds, 1e-9);
      const double images_left = static_cast<double>(n - std::min(n, (step + 1) * sampler_.batch_size())) +
                                 static_cast<double>(epochs - state.epoch - 1) * n;
      log.step(state.epoch + 1, epochs, step + 1, steps, rate,
               state.epoch_loss_sum / state.epoch_seen,
               static_cast<double>(state.epoch_correct) / state.epoch_seen,
               images_left / std::max(rate, 1e-9));
    }

    EpochSummary summary;
    summary.epoch = state.epoch + 1;
    summary.epochs = epochs;
    summary.train_loss = state.epoch_loss_sum / state.epoch_seen;
    summary.train_accuracy = static_cast<double>(state.epoch_correct) / state.epoch_seen;
    summary.lr = schedule.at(state.global_step, steps);
    summary.seconds = state.epoch_seconds;
    summary.images_per_second = state.epoch_seen / state.epoch_seconds;
    summary.extra = replicas_.take_epoch_stats();
    bool best = false;
    if (evaluation.source) {
      result.last_eval =
          evaluate(task_, *evaluation.source, evaluation.batch_size, &replicas_);
      // A diverged model never becomes best.pt, nor a row of nulls in metrics.jsonl.
      if (!std::isfinite(result.last_eval.loss)) {
        log.end_progress();
        std::ostringstream message;
        message << "non-finite test loss (" << result.last_eval.loss << ") after epoch "
                << state.epoch + 1 << ": the model diverged; training stopped. ";
        if (checkpoints.save && !checkpoints.last_path.empty()) {
          message << "The last good checkpoint is " << checkpoints.last_path << ". ";
        }
        message << "Try a lower learning rate (now " << schedule.initial << ", --lr).";
        throw AgreedTrainingError(message.str());
      }
      summary.eval = &result.last_eval;
      best = result.last_eval.accuracy() > state.best_accuracy;
      if (best) state.best_accuracy = result.last_eval.accuracy();
    }
    log.epoch(summary);

    ++state.epoch;
    state.step_in_epoch = 0;
    state.epoch_loss_sum = 0;
    state.epoch_correct = 0;
    state.epoch_seen = 0;
    state.epoch_seconds = 0;
    save(checkpoints.last_path);
    if (best) save(checkpoints.best_path);
    saved = true;
    longest_epoch = std::max(
        longest_epoch,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count());
  }
  return result;
}

} // namespace capsnet
