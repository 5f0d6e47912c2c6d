#include "capsnet/engine/trainer.h"

#include "capsnet/data/dataset.h"
#include "capsnet/engine/adam.h"
#include "capsnet/layers/batch_norm.h"

#include <torch/csrc/autograd/grad_mode.h>

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

StepAgreement StepAgreement::reached(Replicas& replicas, bool stopping, double loss,
                                      int64_t count, int64_t correct) {
  StepAgreement a;
  a.stop = stopping;
  a.non_finite_here = !std::isfinite(loss);
  a.non_finite = a.non_finite_here;
  a.loss_sum = loss * count;
  a.correct = correct;
  a.count = count;
  if (replicas.world_size() == 1) return a;
  std::vector<double> sums = {stopping ? 1.0 : 0.0, a.non_finite ? 1.0 : 0.0, a.loss_sum,
                              static_cast<double>(correct), static_cast<double>(count)};
  replicas.sum(sums);
  a.stop = sums[0] > 0;
  a.non_finite = sums[1] > 0;
  a.loss_sum = sums[2];
  a.correct = static_cast<int64_t>(sums[3]);
  a.count = static_cast<int64_t>(sums[4]);
  return a;
}

void Trainer::fail_non_finite(const std::string& what) {
  if (logger) logger->end_progress();
  std::ostringstream message;
  message << what << ": training stopped. ";
  if (checkpoints.save && !checkpoints.last_path.empty()) {
    message << "The last good checkpoint is " << checkpoints.last_path << ". ";
  }
  message << "Try a lower learning rate (now " << schedule.initial << ", --lr).";
  throw AgreedTrainingError(message.str());
}

void Trainer::save(const std::string& path, const TrainingState& state) const {
  if (checkpoints.save && !path.empty()) checkpoints.save(path, state);
}

bool Trainer::train_step(TrainingState& state, int64_t epochs, FitCall& call) {
  const int64_t steps = sampler_.steps_per_epoch();
  const bool alone = replicas_.world_size() == 1;
  if (alone && stop_requested(call.steps)) return false;
  const auto start = std::chrono::steady_clock::now();
  const int64_t step = state.step_in_epoch;
  LearningRateSchedule::apply(step_.optimizer(), schedule.at(state.global_step, steps));
  // The global batch with its augmentation, as one process would draw it;
  // this rank trains on its slice.
  auto rng = sampler_.step_rng(state.epoch, step);
  const auto global = data_.get(sampler_.global_indices(state.epoch, step), &rng);
  // A source reading files starts on the next step's while this one trains.
  data_.prefetch(step + 1 < steps ? sampler_.global_indices(state.epoch, step + 1)
                                  : sampler_.global_indices(state.epoch + 1, 0));
  data_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto [first, count] = sampler_.shard(global.size());
  const auto batch = global.narrow(first, count);
  if (alone) {
    step_alone(batch, state);
  } else if (!step_agreed(batch, state, call)) {
    return false;
  }
  call.saved = false;
  state.epoch_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++state.global_step;
  ++call.steps;
  if (!alone || report_due(step, steps)) report(state, epochs, step);
  return true;
}

void Trainer::keep_last_scores(const TrainingState& state, const TaskOutput& out,
                               const Batch& batch) {
  if (warn_if_not_learning && state.epoch == 0 &&
      state.step_in_epoch + 1 == sampler_.steps_per_epoch() && batch.labels.dim() == 1) {
    last_scores_ = out.scores.detach().clone(); // a graph's outputs are rewritten
  }
}

void Trainer::start_tally(const TrainingState& state, c10::Device device) {
  const auto host = at::tensor(std::vector<double>{state.epoch_loss_sum,
                                                   static_cast<double>(state.epoch_correct), -1.0,
                                                   0.0, static_cast<double>(state.step_in_epoch)},
                               at::kDouble);
  // Allocated once and written in place: a captured step keeps its address.
  if (!tally_.defined()) tally_ = at::empty({5}, at::TensorOptions(device).dtype(at::kDouble));
  tally_.copy_(on_device(host, device), /*non_blocking=*/true);
  tally_stale_ = false;
}

void Trainer::record(const TaskOutput& out, const Batch& batch) {
  // The epoch's sums grow on the device, in the order and the arithmetic of
  // the host's (so a resumed run's sums are bit for bit an uninterrupted
  // one's); the first non-finite loss is kept with its step.
  const auto loss = out.loss.detach().to(at::kDouble);
  tally_.select(0, 0).add_(loss * static_cast<double>(batch.size()));
  tally_.select(0, 1).add_(correct_on_device(out.scores.detach(), batch.labels));
  const auto first_bad = at::isfinite(loss).logical_not_().logical_and_(tally_.select(0, 2).lt(0));
  tally_.select(0, 3).copy_(at::where(first_bad, loss, tally_.select(0, 3)));
  tally_.select(0, 2).copy_(at::where(first_bad, tally_.select(0, 4), tally_.select(0, 2)));
  tally_.select(0, 4).add_(1);
}

void Trainer::step_alone(const Batch& batch, TrainingState& state) {
  if (tally_stale_) start_tally(state, batch.images.device());
  if ((graph || graphed_) && batch.size() == sampler_.batch_size()) {
    step_graphed(batch, state);
    return;
  }
  if (graphed_) { // a partial batch beside a graph: its gradients stay where they are
    const auto out = graphed_body(batch);
    adam_->step();
    keep_last_scores(state, out, batch);
  } else {
    auto out = step_.forward(batch);
    record(out, batch);
    step_.update(out);
    keep_last_scores(state, out, batch);
  }
  state.epoch_seen += batch.size();
}

TaskOutput Trainer::graphed_body(const Batch& batch) {
  zero_grads(graph_params_);
  auto out = task_.forward(batch, /*training=*/true);
  record(out, batch);
  out.loss.backward();
  return out;
}

void Trainer::step_graphed(const Batch& batch, TrainingState& state) {
  if (!graphed_) {
    adam_ = dynamic_cast<Adam*>(&step_.optimizer());
    if (!adam_) throw TrainingError("a CUDA graph needs capsnet::Adam (engine/adam.h)");
    if (step_.on_gradients) throw TrainingError("a CUDA graph cannot call a gradient hook");
    for (auto& group : adam_->param_groups()) {
      for (auto& p : group.params()) graph_params_.push_back(p);
    }
    static_batch_ = batch;
    static_batch_.images = batch.images.clone();
    static_batch_.labels = batch.labels.clone();
    static_batch_.targets = batch.targets.clone();
    static_batch_.recon_targets = batch.recon_targets.is_same(batch.images)
                                      ? static_batch_.images
                                      : batch.recon_targets.clone();
    graphed_ = std::make_unique<GraphedStep>(std::move(graph), *adam_, [this] {
      static_out_ = graphed_body(static_batch_);
      adam_->update();
    });
  } else {
    static_batch_.images.copy_(batch.images, /*non_blocking=*/true);
    static_batch_.labels.copy_(batch.labels, /*non_blocking=*/true);
    static_batch_.targets.copy_(batch.targets, /*non_blocking=*/true);
    if (!static_batch_.recon_targets.is_same(static_batch_.images)) {
      static_batch_.recon_targets.copy_(batch.recon_targets, /*non_blocking=*/true);
    }
  }
  graphed_->run();
  keep_last_scores(state, static_out_, batch);
  state.epoch_seen += batch.size();
}

void Trainer::read_tally(TrainingState& state) {
  if (!tally_.defined() || tally_stale_) return;
  const auto host = tally_.to(at::kCPU).contiguous(); // the one read back
  const double* sums = host.data_ptr<double>();
  if (sums[2] >= 0) {
    tally_stale_ = true;
    std::ostringstream what;
    what << "non-finite loss (" << sums[3] << ") at epoch " << state.epoch + 1 << ", step "
         << static_cast<int64_t>(sums[2]) + 1;
    fail_non_finite(what.str());
  }
  state.epoch_loss_sum = sums[0];
  state.epoch_correct = static_cast<int64_t>(sums[1]);
}

bool Trainer::step_agreed(const Batch& batch, TrainingState& state, FitCall& call) {
  const int64_t count = batch.size();
  const bool stopping = stop_requested(call.steps);
  TaskOutput out;
  double loss = 0;
  int64_t correct = 0;
  if (count > 0 && !stopping) {
    out = step_.forward(batch);
    loss = out.loss.item<double>();
    correct = count_correct(out.scores.detach(), batch.labels);
    keep_last_scores(state, out, batch);
  }
  // Before backward, every rank learns whether any stops or saw a
  // non-finite loss, and the global batch's loss and accuracy.
  const auto agreed = StepAgreement::reached(replicas_, stopping, loss, count, correct);
  if (agreed.stop) return false;
  if (agreed.non_finite) {
    std::ostringstream what;
    if (agreed.non_finite_here) {
      what << "non-finite loss (" << loss << ")";
    } else {
      what << "non-finite loss on another rank";
    }
    what << " at epoch " << state.epoch + 1 << ", step " << state.step_in_epoch + 1;
    fail_non_finite(what.str());
  }
  step_.update(out, agreed.count > 0 ? static_cast<double>(count) / agreed.count : 0.0);
  state.epoch_loss_sum += agreed.loss_sum;
  state.epoch_correct += agreed.correct;
  state.epoch_seen += agreed.count;
  return true;
}

bool Trainer::report_due(int64_t step, int64_t steps) const {
  if (step + 1 == steps) return true;
  if (report_every_steps > 0) return (step + 1) % report_every_steps == 0;
  return (step + 1) * 10 / steps != last_tenth_ ||
         std::chrono::steady_clock::now() - last_report_ >= std::chrono::seconds(1);
}

void Trainer::report(TrainingState& state, int64_t epochs, int64_t step) {
  read_tally(state);
  const int64_t steps = sampler_.steps_per_epoch();
  last_tenth_ = (step + 1) * 10 / steps;
  last_report_ = std::chrono::steady_clock::now();
  const int64_t n = sampler_.size();
  const double rate = state.epoch_seen / std::max(state.epoch_seconds, 1e-9);
  const double images_left =
      static_cast<double>(n - std::min(n, (step + 1) * sampler_.batch_size())) +
      static_cast<double>(epochs - state.epoch - 1) * n;
  TrainLogger& log = logger ? *logger : silent_;
  log.step(state.epoch + 1, epochs, step + 1, steps, rate, state.epoch_loss_sum / state.epoch_seen,
           static_cast<double>(state.epoch_correct) / state.epoch_seen,
           images_left / std::max(rate, 1e-9));
}

EvalResult Trainer::evaluate_finite(const BatchSource& source, const TrainingState& state,
                                    const char* what) {
  auto result = evaluate(task_, source, evaluation.batch_size, &replicas_);
  // A diverged model never becomes best.pt, nor a row of nulls in metrics.jsonl.
  if (!std::isfinite(result.loss)) {
    std::ostringstream message;
    message << "non-finite " << what << " loss (" << result.loss << ") after epoch "
            << state.epoch + 1 << ": the model diverged";
    fail_non_finite(message.str());
  }
  return result;
}

bool Trainer::evaluate_epoch(const TrainingState& state, FitResult& result) {
  if (!evaluation.source) return false;
  result.last_eval = evaluate_finite(*evaluation.source, state, "test");
  return true;
}

void Trainer::settle_batch_norms(const TrainingState& state) {
  auto& module = task_.module();
  const auto norms = batch_norms(module);
  const int64_t images = std::min(batch_norm.images, data_.size());
  const int64_t batch = std::min(batch_norm.batch_size, images);
  // Every rank runs the same batches (their statistics are summed over the
  // ranks when the norms have a reduce), each on a non-empty slice.
  if (norms.empty() || batch < replicas_.world_size()) return;
  std::vector<double> momenta;
  for (auto* norm : norms) momenta.push_back(norm->momentum);
  at::NoGradGuard no_grad;
  module.train();
  // A draw of its own each epoch, independent of the training order.
  const EpochSampler draw(data_.size(), batch, sampler_.step_rng(state.epoch, -1)());
  for (int64_t b = 0; b < images / batch; ++b) {
    // The average of the batches' statistics: momentum 1 / (b + 1).
    for (auto* norm : norms) norm->momentum = 1.0 / static_cast<double>(b + 1);
    const auto global = data_.get(draw.global_indices(0, b), nullptr);
    const auto [first, count] = sampler_.shard(global.size());
    task_.forward(global.narrow(first, count), /*training=*/true);
  }
  for (size_t i = 0; i < norms.size(); ++i) norms[i]->momentum = momenta[i];
}

void Trainer::end_epoch(TrainingState& state, int64_t epochs, FitResult& result, FitCall& call) {
  TrainLogger& log = logger ? *logger : silent_;
  EpochSummary summary;
  summary.epoch = state.epoch + 1;
  summary.epochs = epochs;
  summary.train_loss = state.epoch_loss_sum / state.epoch_seen;
  summary.train_accuracy = static_cast<double>(state.epoch_correct) / state.epoch_seen;
  summary.lr = schedule.at(state.global_step, sampler_.steps_per_epoch());
  summary.seconds = state.epoch_seconds;
  summary.images_per_second = state.epoch_seen / state.epoch_seconds;
  summary.extra = replicas_.take_epoch_stats();
  summary.extra.emplace_back("data_seconds", data_seconds_);
  data_seconds_ = 0;
  if (batch_norm.images > 0) settle_batch_norms(state);
  bool best = false;
  EvalResult held;
  if (evaluation.validation) {
    held = evaluate_finite(*evaluation.validation, state, "validation");
    summary.validation = &held;
    best = held.accuracy() > state.best_accuracy;
    if (best) state.best_accuracy = held.accuracy();
  }
  if (evaluate_epoch(state, result)) {
    summary.eval = &result.last_eval;
    if (!evaluation.validation && result.last_eval.accuracy() > state.best_accuracy) {
      best = true;
      state.best_accuracy = result.last_eval.accuracy();
    }
  }
  if (best) {
    state.best_epoch = state.epoch + 1;
    state.best_test_accuracy = summary.eval ? result.last_eval.accuracy() : -1;
    summary.best = true;
  }
  log.epoch(summary);
  if (last_scores_.defined()) {
    const auto warning =
        not_learning_warning(summary.train_accuracy, state.epoch_seen, last_scores_);
    if (!warning.empty()) log.message(warning);
    last_scores_ = at::Tensor();
  }

  ++state.epoch;
  tally_stale_ = true;
  state.step_in_epoch = 0;
  state.epoch_loss_sum = 0;
  state.epoch_correct = 0;
  state.epoch_seen = 0;
  state.epoch_seconds = 0;
  save(checkpoints.last_path, state);
  if (best) save(checkpoints.best_path, state);
  call.saved = true;
}

FitResult Trainer::fit(TrainingState& state, int64_t epochs) {
  TrainLogger& log = logger ? *logger : silent_;
  FitResult result;
  FitCall call;
  if ((graph || graphed_) && replicas_.world_size() > 1) {
    throw TrainingError("a CUDA graph is for one process: data-parallel ranks agree after "
                        "every forward pass, outside any graph");
  }
  fit_start_ = std::chrono::steady_clock::now();
  tally_stale_ = true; // the sums start from `state`'s
  while (state.epoch < epochs) {
    if (call.longest_epoch > 0 && next_epoch_overruns(call.longest_epoch)) {
      log.end_progress();
      result.time_limit_reached = true;
      return result; // last.pt was written at the end of the epoch
    }
    const auto epoch_start = std::chrono::steady_clock::now();
    task_.module().train();
    for (; state.step_in_epoch < sampler_.steps_per_epoch(); ++state.step_in_epoch) {
      if (!train_step(state, epochs, call)) {
        read_tally(state); // throws on a non-finite loss: last.pt stays the good one
        if (!call.saved) save(checkpoints.last_path, state);
        result.interrupted = true;
        result.time_limit_reached = past_time_limit();
        return result;
      }
    }
    end_epoch(state, epochs, result, call);
    call.longest_epoch = std::max(
        call.longest_epoch,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count());
  }
  return result;
}

} // namespace capsnet
