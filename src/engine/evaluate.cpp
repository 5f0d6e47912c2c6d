#include "capsnet/engine/evaluate.h"
#include "capsnet/registry/models.h"

#include "capsnet/engine/checkpoint.h"

#include "capsnet/data/registry.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace capsnet {

at::Tensor predicted_classes(const at::Tensor& scores, const at::Tensor& labels) {
  if (labels.dim() == 1) return scores.argmax(-1);
  return std::get<0>(std::get<1>(scores.topk(labels.size(1), /*dim=*/1)).sort(1));
}

std::string classes_text(const at::Tensor& classes, const DataShape& shape) {
  std::string text;
  const auto flat = classes.flatten();
  for (int64_t k = 0; k < flat.numel(); ++k) {
    text += (k ? "," : "") + shape.class_name(flat[k].item<int64_t>());
  }
  return text;
}

WrongPredictions wrong_predictions(const at::Tensor& scores, const at::Tensor& labels) {
  WrongPredictions out;
  const bool pairs = labels.dim() == 2;
  out.predicted = predicted_classes(scores, labels);
  out.confidence = pairs ? std::get<0>(scores.topk(labels.size(1), 1)).select(1, -1)
                         : std::get<0>(scores.max(1));
  out.index = pairs ? out.predicted.ne(std::get<0>(labels.sort(1))).any(1).nonzero().flatten()
                    : out.predicted.ne(labels).nonzero().flatten();
  return out;
}

at::Tensor WrongPredictions::most_confident(int64_t n) const {
  const auto order = confidence.index_select(0, index).argsort(0, /*descending=*/true);
  return index.index_select(0, order.narrow(0, 0, std::min<int64_t>(n, order.size(0))));
}

nlohmann::json eval_json(const EvalResult& result, const EvalReport& report) {
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t k = 0; k < result.class_total.size(); ++k) {
    per_class.push_back(
        {{"class", k},
         {"name", report.shape.class_name(int64_t(k))},
         {"correct", result.class_correct[k]},
         {"total", result.class_total[k]},
         {"accuracy",
          result.class_total[k] ? double(result.class_correct[k]) / result.class_total[k] : 0.0}});
  }
  return {{"checkpoint", report.checkpoint},
          {"dataset", report.dataset},
          {"epoch", report.epoch},
          {"accuracy", result.accuracy()},
          {"errors", result.errors()},
          {"precision", enum_name(report.precision)},
          {"total", result.total},
          {"loss", result.loss},
          {"seconds", result.seconds},
          {"per_class", per_class},
          {"confusion", result.confusion}};
}

std::string eval_text(const EvalResult& result, const EvalReport& report) {
  std::string out;
  char line[4096]; // a path or a class name is at most this long
  std::snprintf(line, sizeof line, "checkpoint %s (epoch %ld, %s, preset %s)\n",
                report.checkpoint.c_str(), static_cast<long>(report.epoch),
                report.dataset.c_str(), report.preset.c_str());
  out += line;
  std::snprintf(line, sizeof line, "test accuracy %.2f%% (%ld errors of %ld), loss %.4f, %.1f s, %s\n",
                100 * result.accuracy(), static_cast<long>(result.errors()),
                static_cast<long>(result.total), result.loss, result.seconds,
                enum_name(report.precision).c_str());
  out += line;
  out += "per-class accuracy:\n";
  for (size_t k = 0; k < result.class_total.size(); ++k) {
    const auto named = report.shape.class_name(int64_t(k));
    const auto name = named == std::to_string(k) ? named : std::to_string(k) + " " + named;
    std::snprintf(
        line, sizeof line, "  %-16s  %6.2f%%  (%ld/%ld)\n", name.c_str(),
        result.class_total[k] ? 100.0 * result.class_correct[k] / result.class_total[k] : 0.0,
        static_cast<long>(result.class_correct[k]), static_cast<long>(result.class_total[k]));
    out += line;
  }
  out += "confusion matrix (rows: true class, columns: predicted):\n     ";
  for (size_t j = 0; j < result.confusion.size(); ++j) {
    std::snprintf(line, sizeof line, " %5zu", j);
    out += line;
  }
  out += "\n";
  for (size_t i = 0; i < result.confusion.size(); ++i) {
    std::snprintf(line, sizeof line, "  %2zu ", i);
    out += line;
    for (auto count : result.confusion[i]) {
      std::snprintf(line, sizeof line, " %5ld", static_cast<long>(count));
      out += line;
    }
    out += "\n";
  }
  return out;
}

at::Tensor correct_on_device(const at::Tensor& scores, const at::Tensor& labels) {
  const auto predicted = predicted_classes(scores, labels);
  if (labels.dim() == 1) return predicted.eq(labels).sum();
  return predicted.eq(std::get<0>(labels.sort(1))).all(1).sum();
}

int64_t count_correct(const at::Tensor& scores, const at::Tensor& labels) {
  return correct_on_device(scores, labels).item<int64_t>();
}

void accumulate(EvalResult& result, const at::Tensor& scores, const at::Tensor& labels) {
  const int64_t K = scores.size(1), n = scores.size(0);
  if (result.class_total.empty()) {
    result.class_correct.assign(K, 0);
    result.class_total.assign(K, 0);
    if (labels.dim() == 1) result.confusion.assign(K, std::vector<int64_t>(K, 0));
  }
  const auto predicted = predicted_classes(scores, labels);
  const auto truth = multi_hot(labels, K), guessed = multi_hot(predicted, K);
  const auto per_class_total = truth.sum(0).to(at::kLong).cpu();
  const auto per_class_correct = (truth * guessed).sum(0).to(at::kLong).cpu();
  for (int64_t k = 0; k < K; ++k) {
    result.class_total[k] += per_class_total[k].item<int64_t>();
    result.class_correct[k] += per_class_correct[k].item<int64_t>();
  }
  if (labels.dim() == 1) {
    const auto pairs = at::bincount(labels * K + predicted, {}, K * K).cpu();
    const auto* pair_counts = pairs.data_ptr<int64_t>();
    for (int64_t k = 0; k < K * K; ++k) result.confusion[k / K][k % K] += pair_counts[k];
  }
  result.correct += count_correct(scores, labels);
  result.total += n;
}

namespace {

// Adds every rank's counts, loss and scores into each rank's `result`; `begin`
// is this rank's first example, `loss_sum` its summed loss.
void sum_over_ranks(EvalResult& result, double& loss_sum, int64_t begin, int64_t size,
                    int64_t K, Replicas& replicas) {
  // Layout: loss, correct, total, has confusion, class_correct[K],
  // class_total[K], confusion[K * K], scores[size * K].
  std::vector<double> v(4 + 2 * K + K * K + size * K, 0.0);
  v[0] = loss_sum;
  v[1] = static_cast<double>(result.correct);
  v[2] = static_cast<double>(result.total);
  v[3] = result.confusion.empty() ? 0 : 1;
  for (int64_t k = 0; k < K && !result.class_total.empty(); ++k) {
    v[4 + k] = static_cast<double>(result.class_correct[k]);
    v[4 + K + k] = static_cast<double>(result.class_total[k]);
  }
  for (int64_t k = 0; k < K * K && !result.confusion.empty(); ++k) {
    v[4 + 2 * K + k] = static_cast<double>(result.confusion[k / K][k % K]);
  }
  const auto scores = result.scores.to(at::kDouble).contiguous();
  std::copy(scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel(),
            v.begin() + 4 + 2 * K + K * K + begin * K);
  replicas.sum(v);
  // Counts are integers below 2^53, exact in doubles.
  auto count = [&](size_t i) { return static_cast<int64_t>(std::llround(v[i])); };
  loss_sum = v[0];
  result.correct = count(1);
  result.total = count(2);
  result.class_correct.assign(K, 0);
  result.class_total.assign(K, 0);
  for (int64_t k = 0; k < K; ++k) {
    result.class_correct[k] = count(4 + k);
    result.class_total[k] = count(4 + K + k);
  }
  result.confusion.clear();
  if (v[3] > 0) {
    result.confusion.assign(K, std::vector<int64_t>(K, 0));
    for (int64_t k = 0; k < K * K; ++k) result.confusion[k / K][k % K] = count(4 + 2 * K + k);
  }
  result.scores = at::from_blob(v.data() + 4 + 2 * K + K * K, {size, K}, at::kDouble)
                      .to(at::kFloat);
}

} // namespace

EvalResult evaluate(Task& task, const BatchSource& source, int64_t batch_size,
                    Replicas* replicas) {
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  auto& module = task.module();
  const bool was_training = module.is_training();
  module.eval();
  EvalResult result;
  std::vector<at::Tensor> scores;
  double loss_sum = 0;
  // This rank's share: contiguous, the first ranks one example more.
  const int64_t world = replicas ? replicas->world_size() : 1;
  const int64_t rank = replicas ? replicas->rank() : 0;
  const int64_t base = source.size() / world, extra = source.size() % world;
  const int64_t first = rank * base + std::min(rank, extra);
  const int64_t end = first + base + (rank < extra ? 1 : 0);
  for (int64_t begin = first; begin < end; begin += batch_size) {
    const auto n = std::min(batch_size, end - begin);
    const auto batch = source.get(at::arange(begin, begin + n, at::kLong), nullptr);
    const auto out = task.forward(batch, /*training=*/false);
    loss_sum += out.loss.item<double>() * n;
    scores.push_back(out.scores.cpu());
    accumulate(result, out.scores, batch.labels);
  }
  result.scores = scores.empty() ? at::empty({0, source.num_classes()}) : at::cat(scores);
  if (world > 1) {
    sum_over_ranks(result, loss_sum, first, source.size(), source.num_classes(), *replicas);
  }
  result.loss = result.total ? loss_sum / result.total : 0.0;
  if (was_training) module.train();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

namespace {

EvalResult evaluate_on(Task& task, int64_t image_size, c10::Device device, const Dataset& data,
                       const TrainOptions& options, const DataShape& shape = {}) {
  const auto& info = dataset_info(options.dataset);
  const auto prepared = source_options(options, shape);
  if (prepared.crop == 0) require_image_size(info, data, image_size);
  if (!info.source && data.channels() != shape.channels) {
    throw std::invalid_argument("the model takes images of " + std::to_string(shape.channels) +
                                " channels but " + info.name + "'s have " +
                                std::to_string(data.channels()));
  }
  const auto source = make_source(info, data, Split::kTest, prepared, device);
  return evaluate(task, *source, options.eval_batch_size);
}

} // namespace

EvalResult evaluate(CapsNet& model, const Dataset& data, const TrainOptions& options) {
  CapsNetTask task(model, options);
  DataShape shape;
  shape.channels = model->config.in_channels;
  return evaluate_on(task, model->config.image_size, model->parameters().front().device(), data,
                     options, shape);
}

EvalResult evaluate(BaselineCnn& model, const Dataset& data, const TrainOptions& options) {
  BaselineCnnTask task(model);
  DataShape shape;
  shape.channels = model->config.in_channels;
  return evaluate_on(task, model->config.image_size, model->parameters().front().device(), data,
                     options, shape);
}

EvalResult evaluate(LoadedCheckpoint& loaded, const Dataset& data, const TrainOptions& options) {
  auto task = loaded.task(options);
  return evaluate_on(*task, loaded.shape.image_size, loaded.module().parameters().front().device(),
                     data, options, loaded.shape);
}

} // namespace capsnet
