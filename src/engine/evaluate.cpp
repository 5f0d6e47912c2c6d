#include "capsnet/engine/evaluate.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>

namespace capsnet {

BatchLoss capsnet_loss(const CapsNetOutput& out, const at::Tensor& images,
                       const at::Tensor& labels, const TrainOptions& options) {
  BatchLoss loss;
  loss.margin = margin_loss(out.lengths, labels, options.margin);
  loss.total = loss.margin;
  if (options.recon_weight > 0 && out.reconstruction.defined()) {
    loss.reconstruction = reconstruction_loss(out.reconstruction, images, options.recon_loss);
    loss.total = loss.total + options.recon_weight * loss.reconstruction;
  }
  return loss;
}

EvalResult evaluate(CapsNet& model, const Dataset& data, const TrainOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  EvalResult result;
  result.class_correct.assign(data.num_classes, 0);
  result.class_total.assign(data.num_classes, 0);
  result.confusion.assign(data.num_classes, std::vector<int64_t>(data.num_classes, 0));
  std::vector<at::Tensor> lengths;
  std::mt19937_64 unused_rng(0); // no shift at test time
  const auto device = model->parameters().front().device();
  double loss_sum = 0;
  for (int64_t begin = 0; begin < data.size(); begin += options.eval_batch_size) {
    const auto n = std::min(options.eval_batch_size, data.size() - begin);
    auto images = prepare_batch(data.images.narrow(0, begin, n).to(device), 0, options.normalize,
                                unused_rng);
    auto labels = data.labels.narrow(0, begin, n).to(device);
    auto out = model->forward(images, {}, options.recon_weight > 0);
    loss_sum += capsnet_loss(out, images, labels, options).total.item<double>() * n;
    auto hits = out.predictions.eq(labels);
    lengths.push_back(out.lengths.cpu());
    const auto pairs = at::bincount(labels * data.num_classes + out.predictions, {},
                                    data.num_classes * data.num_classes)
                           .cpu();
    const auto* pair_counts = pairs.data_ptr<int64_t>();
    for (int64_t k = 0; k < data.num_classes * data.num_classes; ++k) {
      result.confusion[k / data.num_classes][k % data.num_classes] += pair_counts[k];
    }
    auto per_class_total = at::bincount(labels, {}, data.num_classes).cpu();
    auto per_class_correct = at::bincount(labels.masked_select(hits), {}, data.num_classes).cpu();
    for (int64_t k = 0; k < data.num_classes; ++k) {
      result.class_total[k] += per_class_total[k].item<int64_t>();
      result.class_correct[k] += per_class_correct[k].item<int64_t>();
    }
    result.correct += hits.sum().item<int64_t>();
    result.total += n;
  }
  result.loss = result.total ? loss_sum / result.total : 0.0;
  result.lengths = lengths.empty() ? at::empty({0, data.num_classes}) : at::cat(lengths);
  if (was_training) model->train();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

} // namespace capsnet
