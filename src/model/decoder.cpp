#include "capsnet/model/decoder.h"

#include <c10/util/Exception.h>

#include <numeric>
#include <string>

namespace capsnet {

DecoderImpl::DecoderImpl(DecoderOptions options_) : options(std::move(options_)) {
  TORCH_CHECK(options.image_shape().size() == 3, "expected an image shape [C, H, W], got ",
              c10::IntArrayRef(options.image_shape()));
  const int64_t pixels = std::accumulate(options.image_shape().begin(), options.image_shape().end(),
                                         int64_t{1}, std::multiplies<int64_t>());
  int64_t width = options.num_capsules() * options.capsule_dim();
  std::vector<int64_t> widths = options.hidden();
  widths.push_back(pixels);
  // Registered as 0, 2, 4, ...: where nn.Sequential(Linear, ReLU, ...) keeps them.
  for (size_t k = 0; k < widths.size(); ++k) {
    layers.push_back(register_module(std::to_string(2 * k), torch::nn::Linear(width, widths[k])));
    width = widths[k];
  }
}

at::Tensor DecoderImpl::forward(const at::Tensor& capsules, const at::Tensor& classes) {
  TORCH_CHECK(capsules.dim() == 3 && capsules.size(1) == options.num_capsules() &&
                  capsules.size(2) == options.capsule_dim(),
              "expected capsules [B, ", options.num_capsules(), ", ", options.capsule_dim(),
              "], got ", capsules.sizes());
  TORCH_CHECK((classes.dim() == 1 || classes.dim() == 2) && classes.size(0) == capsules.size(0),
              "expected classes [B] or [B, P] with B = ", capsules.size(0), ", got ",
              classes.sizes());
  const bool several = classes.dim() == 2;
  const auto chosen = several ? classes : classes.unsqueeze(1); // [B, P]
  const int64_t B = capsules.size(0), P = chosen.size(1), K = options.num_capsules();
  // mask [B, P, K]: one row per reconstruction, 1 at its capsule.
  auto mask = at::zeros({B, P, K}, capsules.options()).scatter_(2, chosen.unsqueeze(2), 1.0);
  auto x = (capsules.unsqueeze(1) * mask.unsqueeze(-1)).reshape({B * P, -1});
  for (size_t k = 0; k < layers.size(); ++k) {
    x = layers[k]->forward(x);
    x = k + 1 < layers.size() ? at::relu(x) : at::sigmoid(x);
  }
  std::vector<int64_t> shape = {B};
  if (several) shape.push_back(P);
  shape.insert(shape.end(), options.image_shape().begin(), options.image_shape().end());
  return x.view(shape);
}

} // namespace capsnet
