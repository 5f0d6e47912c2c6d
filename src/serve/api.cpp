#include "capsnet/serve/api.h"

#include "capsnet/image/image.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <iterator>

namespace capsnet::serve {

namespace {

// "image/png; charset=x" -> "image/png", lower case.
std::string media_type(const std::string& content_type) {
  std::string type = content_type.substr(0, content_type.find(';'));
  type.erase(std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }),
             type.end());
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return type;
}

nlohmann::json parse_json(const std::string& body) {
  try {
    return nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) { // parse_error; out_of_range for 1e400
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
}

std::vector<float> to_floats(const at::Tensor& t) {
  const auto c = t.detach().to(at::kFloat).contiguous().cpu();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

} // namespace

bool is_picture_type(const std::string& content_type) {
  // What browsers and curl send for the formats prepare_picture reads; the
  // bytes themselves decide the format (decode_picture checks them).
  static const char* const kTypes[] = {"image/png",
                                       "image/jpeg",
                                       "image/bmp",
                                       "image/x-ms-bmp",
                                       "image/gif",
                                       "image/x-portable-graymap",
                                       "image/x-portable-pixmap",
                                       "image/x-portable-anymap",
                                       "application/octet-stream"};
  const auto type = media_type(content_type);
  return std::any_of(std::begin(kTypes), std::end(kTypes),
                     [&](const char* t) { return type == t; });
}

at::Tensor parse_predict_body(const std::string& body, const std::string& content_type,
                              const Predictor& predictor, DecodeBudget* budget) {
  const auto sizes = predictor.sizes();
  const int64_t channels = sizes.in_channels, side = sizes.image_size;
  if (is_picture_type(content_type)) {
    if (body.empty()) {
      throw ApiError(400, "the body is empty; send a PNG, JPEG, BMP or GIF picture");
    }
    try {
      DecodeBudget::Lease lease;
      if (budget) {
        const auto info = picture_info(body, "the uploaded image");
        auto refusal = DecodeBudget::Refusal::kNone;
        lease = budget->reserve(int64_t(info.width) * info.height, refusal);
        if (refusal == DecodeBudget::Refusal::kTooLarge) {
          throw ApiError(413, "the picture is " + std::to_string(info.width) + "x" +
                                  std::to_string(info.height) + " pixels, more than this "
                                  "server decodes at once (" +
                                  std::to_string(budget->max_pixels()) + "); scale it down");
        }
        if (refusal == DecodeBudget::Refusal::kBusy) {
          throw ApiError(503, "the server is decoding as many pictures as it may at once; "
                              "try again in a moment", "decode_budget");
        }
      }
      return predictor.prepare_picture(body, "the uploaded image");
    } catch (const ImageError& e) {
      throw ApiError(400, e.what());
    }
  }
  if (media_type(content_type) != "application/json") {
    throw ApiError(415, "Content-Type '" + content_type +
                            "' is not accepted; send a picture (image/png, image/jpeg, "
                            "image/bmp, image/gif) or application/json");
  }
  auto j = parse_json(body);
  if (j.is_object() && j.contains("pixels")) j = j.at("pixels");
  const auto count = channels * side * side;
  if (!j.is_array() || int64_t(j.size()) != count) {
    const auto square = std::to_string(side) + "x" + std::to_string(side);
    throw ApiError(400, "expected a JSON array of " + std::to_string(count) + " numbers (" +
                            (channels == 1 ? "a " + square + " image, row-major"
                                           : std::to_string(channels) + " channels of " + square +
                                                 ", one after the other, each row-major") +
                            ", in [0, 1]) or {\"pixels\": [...]}");
  }
  const bool digits = predictor.shape().preparation == Preparation::kDigit;
  std::vector<float> pixels(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const auto& v = j[size_t(i)];
    if (!v.is_number()) {
      throw ApiError(400, "pixel " + std::to_string(i) + " is not a number");
    }
    const double x = v.get<double>();
    if (!(x >= 0.0 && x <= 1.0)) {
      throw ApiError(400, "pixel " + std::to_string(i) + " is " + v.dump() +
                              "; pixels are in [0, 1]" + (digits ? " (ink bright)" : ""));
    }
    pixels[size_t(i)] = static_cast<float>(x);
  }
  return at::tensor(pixels).view({1, channels, side, side});
}

ReconstructRequest parse_reconstruct_body(const std::string& body, const std::string& content_type,
                                          int64_t classes, int64_t dim) {
  if (media_type(content_type) != "application/json") {
    throw ApiError(415, "Content-Type '" + content_type +
                            "' is not accepted; send application/json: {\"capsule\": k, "
                            "\"vector\": [" + std::to_string(dim) + " numbers]}");
  }
  const auto j = parse_json(body);
  if (!j.is_object() || !j.contains("capsule") || !j.contains("vector")) {
    throw ApiError(400, "expected {\"capsule\": k, \"vector\": [" + std::to_string(dim) +
                            " numbers]} and optionally \"format\": \"pixels\" or \"png\"");
  }
  ReconstructRequest request;
  const auto& k = j.at("capsule");
  if (!k.is_number_integer()) throw ApiError(400, "\"capsule\" must be an integer");
  request.capsule = k.get<int64_t>();
  if (request.capsule < 0 || request.capsule >= classes) {
    throw ApiError(422, "\"capsule\" is " + k.dump() + "; the model has capsules 0 to " +
                            std::to_string(classes - 1));
  }
  const auto& v = j.at("vector");
  if (!v.is_array() || int64_t(v.size()) != dim) {
    throw ApiError(422, "\"vector\" must be an array of " + std::to_string(dim) + " numbers");
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number()) throw ApiError(400, "\"vector\"[" + std::to_string(i) + "] is not a number");
    const double x = v[i].get<double>();
    if (!std::isfinite(x) || std::abs(x) > kMaxCapsuleComponent) {
      throw ApiError(422, "\"vector\"[" + std::to_string(i) + "] is " + v[i].dump() +
                              "; components are within +-" +
                              std::to_string(int(kMaxCapsuleComponent)) +
                              " (a capsule is shorter than 1)");
    }
    request.vector.push_back(static_cast<float>(x));
  }
  if (j.contains("format")) {
    const auto& f = j.at("format");
    if (f == "png") {
      request.png = true;
    } else if (f != "pixels") {
      throw ApiError(400, "\"format\" is " + f.dump() + "; expected \"pixels\" or \"png\"");
    }
  }
  return request;
}

nlohmann::json model_info(const Predictor& predictor) {
  const auto config = predictor.sizes();
  std::vector<std::string> names;
  for (int64_t k = 0; k < config.num_classes; ++k) names.push_back(predictor.class_name(k));
  return {{"side", config.image_size},
          {"image_size", config.image_size},
          {"channels", config.in_channels},
          {"classes", config.num_classes},
          {"capsule_dim", config.capsule_dim},
          {"class_names", names},
          {"preparation", predictor.shape().preparation}};
}

nlohmann::json predict_reply(const Classification& result, const at::Tensor& input,
                             const DataShape& shape) {
  TORCH_CHECK(input.dim() == 4 && input.size(0) == 1,
              "expected one input image [1, C, S, S], got ", input.sizes());
  const auto lengths = to_floats(result.lengths[0]);
  const auto caps = result.capsules[0];
  nlohmann::json capsules = nlohmann::json::array();
  for (int64_t k = 0; k < caps.size(0); ++k) capsules.push_back(to_floats(caps[k]));
  const auto predicted = result.predictions[0].item<int64_t>();
  return {{"class", predicted},
          {"class_name", shape.class_name(predicted)},
          {"lengths", lengths},
          {"capsules", capsules},
          {"channels", input.size(1)},
          {"side", input.size(-1)},
          {"input", to_floats(input)}};
}

nlohmann::json reconstruct_reply(int64_t capsule, const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 4 && image.size(0) == 1,
              "expected one reconstruction [1, C, S, S], got ", image.sizes());
  return {{"capsule", capsule},
          {"channels", image.size(1)},
          {"side", image.size(-1)},
          {"pixels", to_floats(image)}};
}

std::string reconstruct_png(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 4 && image.size(0) == 1,
              "expected one reconstruction [1, C, S, S], got ", image.sizes());
  return encode_png(tensor_picture(image[0].clamp(0, 1)));
}

nlohmann::json error_reply(int status, const std::string& message) {
  return {{"error", message}, {"status", status}};
}

int threads_for_batch(int64_t batch, int threads) {
  return static_cast<int>(std::clamp<int64_t>(batch / 8, 1, std::max(threads, 1)));
}

BatchingPredictor::BatchingPredictor(Predictor& predictor, int64_t max_batch, int64_t max_queue,
                                     ServeMetrics* metrics)
    : predictor_(predictor),
      max_batch_(std::max<int64_t>(1, max_batch)),
      max_queue_(std::max<int64_t>(0, max_queue)),
      threads_(at::get_num_threads()),
      metrics_(metrics) {
  thread_ = std::thread([this] { run(); });
}

BatchingPredictor::~BatchingPredictor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

BatchingPredictor::Answer BatchingPredictor::submit(at::Tensor input, int64_t capsule) {
  std::future<Answer> result;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw std::runtime_error("the server is stopping");
    if (max_queue_ > 0 && int64_t(queue_.size()) >= max_queue_) {
      throw ApiError(503, "the server is busy: " + std::to_string(queue_.size()) +
                              " requests are waiting; try again in a moment",
                     "queue_full");
    }
    queue_.push_back({std::move(input), capsule, {}});
    result = queue_.back().done.get_future();
  }
  wake_.notify_one();
  return result.get();
}

Classification BatchingPredictor::classify(const at::Tensor& image, int64_t* batch) {
  const auto out = submit(image, -1);
  if (batch) *batch = out.batch;
  return {out.tensors[0], out.tensors[1], out.tensors[2]};
}

at::Tensor BatchingPredictor::reconstruct(const at::Tensor& capsules, int64_t capsule,
                                          int64_t* batch) {
  const auto out = submit(capsules, capsule);
  if (batch) *batch = out.batch;
  return out.tensors[0];
}

int64_t BatchingPredictor::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return int64_t(queue_.size());
}

BatchingPredictor::Stats BatchingPredictor::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void BatchingPredictor::run() {
  for (;;) {
    std::vector<Job> images, capsules;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return; // stopping, nothing left
      // Everything waiting, up to max_batch of each kind; the rest stays queued.
      for (auto it = queue_.begin(); it != queue_.end();) {
        auto& kind = it->capsule < 0 ? images : capsules;
        if (int64_t(kind.size()) < max_batch_) {
          kind.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    // One batch per kind; an error fails that batch's requests only.
    auto serve_batch = [this](std::vector<Job>& jobs, bool reconstruct) {
      if (jobs.empty()) return;
#if AT_PARALLEL_OPENMP // other backends refuse a new count once work has started
      const int threads = threads_for_batch(int64_t(jobs.size()), threads_);
      if (threads != at::get_num_threads()) at::set_num_threads(threads);
#endif
      std::vector<std::vector<at::Tensor>> answers;
      const auto start = std::chrono::steady_clock::now();
      try {
        std::vector<at::Tensor> inputs;
        for (const auto& job : jobs) inputs.push_back(job.input);
        const auto batch = at::cat(inputs, 0);
        if (reconstruct) {
          std::vector<int64_t> classes;
          for (const auto& job : jobs) classes.push_back(job.capsule);
          const auto out = predictor_.reconstruct(batch, at::tensor(classes, at::kLong));
          for (size_t i = 0; i < jobs.size(); ++i) {
            answers.push_back({out.narrow(0, int64_t(i), 1).clone()});
          }
        } else {
          const auto out = predictor_.classify(batch);
          for (size_t i = 0; i < jobs.size(); ++i) {
            const auto row = int64_t(i);
            answers.push_back({out.capsules.narrow(0, row, 1).clone(),
                               out.lengths.narrow(0, row, 1).clone(),
                               out.predictions.narrow(0, row, 1).clone()});
          }
        }
      } catch (...) {
        for (auto& job : jobs) job.done.set_exception(std::current_exception());
        return;
      }
      {
        // Counted before anyone is answered: a caller that has its answer sees it counted.
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.batches += 1;
        stats_.images += int64_t(jobs.size());
        stats_.largest = std::max(stats_.largest, int64_t(jobs.size()));
        stats_.threads = at::get_num_threads();
      }
      if (metrics_) {
        const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
        metrics_->batch(int64_t(jobs.size()), seconds.count());
      }
      for (size_t i = 0; i < jobs.size(); ++i) {
        jobs[i].done.set_value({std::move(answers[i]), int64_t(jobs.size())});
      }
    };
    serve_batch(images, false);
    serve_batch(capsules, true);
  }
}

} // namespace capsnet::serve
