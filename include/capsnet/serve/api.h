#pragma once

// What `capsnet serve` answers, apart from HTTP: the request bodies of its
// JSON API read and checked, the replies built, and one inference thread
// that batches the requests waiting for it. The HTTP server itself
// (cpp-httplib) is in apps/capsnet/serve_command.cpp.

#include "capsnet/engine/inference.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace capsnet::serve {

/// A request the API refuses: its HTTP status (4xx) and what is wrong.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

/// The largest request body the server reads (4 MiB); larger ones get 413.
constexpr size_t kMaxBodyBytes = size_t(4) << 20;

/// A capsule component the reconstruct API takes: a digit capsule is shorter
/// than 1 (squash), and the page's sliders move it by at most 0.25.
constexpr double kMaxCapsuleComponent = 2.0;

/// The image of a POST /api/predict body as float [1, 1, side, side] in [0, 1]:
/// - image/png or image/jpeg (or application/octet-stream holding either): a
///   picture of a digit, prepared as `capsnet predict` prepares files
///   (prepare_digit_image);
/// - application/json: side * side numbers in [0, 1], row-major, ink bright,
///   used as they are (as `capsnet predict` uses IDX images), either as an
///   array or as {"pixels": [...]}.
/// Throws ApiError: 415 for another content type, 400 for a body that is not
/// what its type says or has the wrong number or range of values.
at::Tensor parse_predict_body(const std::string& body, const std::string& content_type,
                              int64_t side);

/// A POST /api/reconstruct body: {"capsule": k, "vector": [D numbers]} and
/// optionally "format": "pixels" (the default: JSON) or "png".
struct ReconstructRequest {
  int64_t capsule = 0;
  std::vector<float> vector;
  bool png = false;
};

/// Throws ApiError: 415 unless application/json, 400 for bad JSON or a
/// missing or mistyped field, 422 for a capsule index outside [0, classes)
/// or a vector of another length than `dim`, with a component that is not
/// finite or beyond kMaxCapsuleComponent.
ReconstructRequest parse_reconstruct_body(const std::string& body, const std::string& content_type,
                                          int64_t classes, int64_t dim);

/// The reply of /api/predict for one image: {"class", "lengths": [K],
/// "capsules": [K][D], "input": [side * side] (the preprocessed image, what
/// the network saw), "side"}.
nlohmann::json predict_reply(const Classification& result, const at::Tensor& input);

/// The reply of /api/reconstruct as JSON: {"capsule", "side", "pixels": [side * side]}.
nlohmann::json reconstruct_reply(int64_t capsule, const at::Tensor& image);

/// {"error": message, "status": status}.
nlohmann::json error_reply(int status, const std::string& message);

/// One thread runs every inference. Callers on any thread queue an image or
/// a capsule and wait; the thread takes everything waiting (up to max_batch
/// of each kind) and runs it as one batch, so concurrent requests share a
/// forward pass and nothing waits for a timer.
class BatchingPredictor {
 public:
  BatchingPredictor(Predictor& predictor, int64_t max_batch = 64);
  ~BatchingPredictor(); ///< finishes what is queued, then stops the thread
  BatchingPredictor(const BatchingPredictor&) = delete;
  BatchingPredictor& operator=(const BatchingPredictor&) = delete;

  /// image float [1, C, S, S] -> its classification (batch of one).
  Classification classify(const at::Tensor& image);
  /// capsules float [1, K, D], class -> reconstruction [1, C, S, S].
  at::Tensor reconstruct(const at::Tensor& capsules, int64_t capsule);

  struct Stats {
    int64_t batches = 0, images = 0, largest = 0;
  };
  Stats stats() const;

 private:
  struct Job {
    at::Tensor input; // image [1, C, S, S] or capsules [1, K, D]
    int64_t capsule = -1; // >= 0: a reconstruction
    std::promise<std::vector<at::Tensor>> done;
  };
  std::vector<at::Tensor> submit(at::Tensor input, int64_t capsule);
  void run();

  Predictor& predictor_;
  int64_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

} // namespace capsnet::serve
