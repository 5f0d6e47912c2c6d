#include "capsnet/model/capsule_network.h"

#include <c10/util/Exception.h>

namespace capsnet {

void CapsuleNetworkImpl::check_images(const at::Tensor& images) const {
  const auto s = shape();
  TORCH_CHECK(images.dim() == 4 && images.size(1) == s.in_channels &&
                  images.size(2) == s.image_size && images.size(3) == s.image_size,
              "expected images of shape [B, ", s.in_channels, ", ", s.image_size, ", ",
              s.image_size, "], got ", images.sizes());
}

CapsNetOutput CapsuleNetworkImpl::forward(const at::Tensor& images, const at::Tensor& mask_classes,
                                          bool with_reconstruction) {
  CapsNetOutput out;
  out.capsules = capsules(images);
  // at::norm's backward is defined (zero) at a zero vector, unlike sqrt(sum(v^2)).
  out.lengths = at::norm(out.capsules, 2, {-1});
  out.predictions = out.lengths.argmax(-1);
  if (with_reconstruction) {
    out.reconstruction =
        reconstruct(out.capsules, mask_classes.defined() ? mask_classes : out.predictions);
    stage("decoder", out.reconstruction);
  }
  return out;
}

} // namespace capsnet
