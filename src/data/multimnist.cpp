#include "capsnet/data/multimnist.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>

namespace capsnet {

double MultiMnistPair::box_overlap(int64_t side) const {
  const auto shared = [side](int64_t a, int64_t b) {
    return static_cast<double>(std::max<int64_t>(0, side - std::abs(a - b)));
  };
  return shared(first_shift[0], second_shift[0]) * shared(first_shift[1], second_shift[1]) /
         static_cast<double>(side * side);
}

MultiMnistSource::MultiMnistSource(Dataset base, MultiMnistOptions options)
    : base_(std::move(base)), options_(options) {
  TORCH_CHECK(base_.size() > 1, "MultiMNIST needs a base data set of at least two images");
  TORCH_CHECK(options_.pairs_per_digit > 0, "MultiMNIST: pairs_per_digit must be positive");
  TORCH_CHECK(options_.max_shift >= 0, "MultiMNIST: max_shift must not be negative");
  TORCH_CHECK(base_.images.size(2) + 2 * options_.max_shift <= options_.frame,
              "MultiMNIST: a ", base_.images.size(2), "-pixel digit shifted by ",
              options_.max_shift, " does not fit a frame of ", options_.frame);
  labels_cpu_ = base_.labels.to(at::kCPU).contiguous();
  const auto classes = std::get<0>(at::_unique(labels_cpu_));
  TORCH_CHECK(classes.numel() > 1, "MultiMNIST needs digits of at least two classes");
}

MultiMnistPair MultiMnistSource::pair(int64_t index, std::mt19937_64* rng) const {
  TORCH_CHECK(index >= 0 && index < size(), "MultiMNIST example ", index, " is outside [0, ",
              size(), ")");
  std::mt19937_64 fixed = example_stream(options_.seed, index);
  std::mt19937_64& draw = rng ? *rng : fixed;
  const int64_t n = base_.size();
  const auto* labels = labels_cpu_.data_ptr<int64_t>();
  MultiMnistPair p;
  p.first = index % n;
  p.first_class = labels[p.first];
  std::uniform_int_distribution<int64_t> any(0, n - 1);
  do { // a partner of another class (about 1.1 draws for MNIST)
    p.second = any(draw);
  } while (labels[p.second] == p.first_class);
  p.second_class = labels[p.second];
  std::uniform_int_distribution<int64_t> shift(-options_.max_shift, options_.max_shift);
  for (auto* s : {&p.first_shift, &p.second_shift}) {
    (*s)[0] = shift(draw);
    (*s)[1] = shift(draw);
  }
  return p;
}

Batch MultiMnistSource::get(const at::Tensor& indices, std::mt19937_64* rng) const {
  const auto index = indices.to(at::kCPU, at::kLong).contiguous();
  const int64_t batch = index.numel(), side = base_.images.size(2), frame = options_.frame;
  const int64_t centre = (frame - side) / 2;
  const auto device = base_.images.device();
  std::vector<int64_t> first(batch), second(batch), labels(2 * batch);
  std::vector<MultiMnistPair> pairs(batch);
  for (int64_t b = 0; b < batch; ++b) {
    pairs[b] = pair(index.data_ptr<int64_t>()[b], rng);
    first[b] = pairs[b].first;
    second[b] = pairs[b].second;
    labels[2 * b] = pairs[b].first_class;
    labels[2 * b + 1] = pairs[b].second_class;
  }
  auto take = [&](const std::vector<int64_t>& which) {
    return base_.images.index_select(0, at::tensor(which, at::kLong).to(device))
        .to(at::kFloat)
        .div_(255.0);
  };
  const auto a = take(first), b = take(second);
  auto digits = at::zeros({batch, 2, 1, frame, frame}, a.options());
  for (int64_t k = 0; k < batch; ++k) {
    const auto& p = pairs[k];
    digits[k][0].narrow(1, centre + p.first_shift[0], side).narrow(2, centre + p.first_shift[1], side)
        .copy_(a[k]);
    digits[k][1].narrow(1, centre + p.second_shift[0], side)
        .narrow(2, centre + p.second_shift[1], side)
        .copy_(b[k]);
  }
  Batch out;
  out.images = digits.sum(1).clamp_max_(1.0); // the authors' np.minimum(a + b, 255)
  out.labels = at::tensor(labels, at::kLong).view({batch, 2}).to(device);
  out.targets = multi_hot(out.labels, base_.num_classes);
  out.recon_targets = digits;
  return out;
}

} // namespace capsnet
