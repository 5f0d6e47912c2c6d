#include "capsnet/engine/evaluate.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>

namespace capsnet {

at::Tensor predicted_classes(const at::Tensor& scores, const at::Tensor& labels) {
  if (labels.dim() == 1) return scores.argmax(-1);
  return std::get<0>(std::get<1>(scores.topk(labels.size(1), /*dim=*/1)).sort(1));
}

int64_t count_correct(const at::Tensor& scores, const at::Tensor& labels) {
  const auto predicted = predicted_classes(scores, labels);
  if (labels.dim() == 1) return predicted.eq(labels).sum().item<int64_t>();
  return predicted.eq(std::get<0>(labels.sort(1))).all(1).sum().item<int64_t>();
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

EvalResult evaluate(Task& task, const BatchSource& source, int64_t batch_size) {
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  auto& module = task.module();
  const bool was_training = module.is_training();
  module.eval();
  EvalResult result;
  std::vector<at::Tensor> scores;
  double loss_sum = 0;
  for (int64_t begin = 0; begin < source.size(); begin += batch_size) {
    const auto n = std::min(batch_size, source.size() - begin);
    const auto batch = source.get(at::arange(begin, begin + n, at::kLong), nullptr);
    const auto out = task.forward(batch, /*training=*/false);
    loss_sum += out.loss.item<double>() * n;
    scores.push_back(out.scores.cpu());
    accumulate(result, out.scores, batch.labels);
  }
  result.loss = result.total ? loss_sum / result.total : 0.0;
  result.scores = scores.empty() ? at::empty({0, source.num_classes()}) : at::cat(scores);
  if (was_training) module.train();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

EvalResult evaluate(CapsNet& model, const Dataset& data, const TrainOptions& options) {
  const auto device = model->parameters().front().device();
  DatasetSource source(data, /*max_shift=*/0, options.normalize, device);
  CapsNetTask task(model, options);
  return evaluate(task, source, options.eval_batch_size);
}

} // namespace capsnet
