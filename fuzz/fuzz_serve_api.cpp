// libFuzzer target: capsnet serve's API without HTTP. The first byte picks the
// handler (predict or reconstruct) and the Content-Type the body is sent
// with; the rest is the body. Only ApiError (a 4xx for the client) may come
// out, and what is accepted is in range: a predict input of the model's
// shape in [0, 1], a reconstruct request of a capsule the model has and a
// vector of its dimension within the bound.
#include "capsnet/model/capsnet.h"
#include "capsnet/serve/api.h"

#include <cmath>
#include <iterator>
#include <string>

namespace {

const char* const kTypes[] = {"application/json", "application/json; charset=utf-8",
                              "image/png", "image/jpeg", "image/bmp", "image/gif",
                              "image/x-portable-graymap", "application/octet-stream",
                              "text/plain", "", "APPLICATION/JSON", "multipart/form-data"};

// A small untrained digit model (28x28 inputs, 10 capsules of 16): the parsers
// read its sizes and preparation only.
capsnet::Predictor& predictor() {
  static capsnet::Predictor* p = [] {
    capsnet::CapsNetConfig config;
    config.conv1_channels = 8;
    config.primary_types = 2;
    config.decoder_hidden = {16};
    capsnet::CapsNet model(config);
    capsnet::TrainOptions options;
    options.model = config;
    return new capsnet::Predictor(model.ptr(), options);
  }();
  return *p;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool reconstruct = data[0] & 0x80;
  const std::string type = kTypes[(data[0] & 0x7f) % std::size(kTypes)];
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto& model = predictor();
  const auto sizes = model.sizes();
  try {
    if (reconstruct) {
      const auto request =
          capsnet::serve::parse_reconstruct_body(body, type, sizes.num_classes, sizes.capsule_dim);
      if (request.capsule < 0 || request.capsule >= sizes.num_classes) __builtin_trap();
      if (int64_t(request.vector.size()) != sizes.capsule_dim) __builtin_trap();
      for (float v : request.vector) {
        if (!std::isfinite(v) || std::abs(v) > capsnet::serve::kMaxCapsuleComponent) __builtin_trap();
      }
    } else {
      const auto input = capsnet::serve::parse_predict_body(body, type, model);
      if (input.dim() != 4 || input.size(0) != 1 || input.size(1) != sizes.in_channels ||
          input.size(2) != sizes.image_size || input.size(3) != sizes.image_size) {
        __builtin_trap();
      }
      if (!(input.min().item<float>() >= 0.0f && input.max().item<float>() <= 1.0f)) __builtin_trap();
    }
  } catch (const capsnet::serve::ApiError& e) {
    if (e.status < 400 || e.status > 499) __builtin_trap();
  }
  return 0;
}
