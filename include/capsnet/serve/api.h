#pragma once

// What `capsnet serve` answers, apart from HTTP: the request bodies of its
// JSON API read and checked, the replies built, and one inference thread
// that batches the requests waiting for it. The HTTP server itself
// (cpp-httplib) is in apps/capsnet/serve_command.cpp.

#include "capsnet/inference/inference.h"
#include "capsnet/serve/guard.h"
#include "capsnet/serve/metrics.h"

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
#include <utility>
#include <vector>

namespace capsnet::serve {

/// A request the API refuses: its HTTP status (4xx, or 503 for a server too
/// busy to take it now) and what is wrong.
class ApiError : public std::runtime_error {
 public:
  /// Refused with HTTP `status` and `message`; `refusal`: a 503's cause.
  ApiError(int status, const std::string& message, std::string refusal = "")
      : std::runtime_error(message), status(status), refusal(std::move(refusal)) {}
  int status; ///< the HTTP status of the reply: 4xx, or 503
  /// A 503's cause, as /metrics counts refusals: "queue_full", "decode_budget".
  std::string refusal;
};

/// The largest request body the server reads (4 MiB); larger ones get 413.
constexpr size_t kMaxBodyBytes = size_t(4) << 20;

/// A capsule component the reconstruct API takes: a digit capsule is shorter
/// than 1 (squash), and the page's sliders move it by at most 0.25.
constexpr double kMaxCapsuleComponent = 2.0;

/// The Content-Types of picture bodies: image/png, image/jpeg, image/bmp,
/// image/gif, the PNM types, and application/octet-stream holding one of them.
bool is_picture_type(const std::string& content_type);

/// The image of a POST /api/predict body for `predictor`'s model, float
/// [1, C, S, S] in [0, 1]:
/// - a picture (is_picture_type): PNG, JPEG, BMP, GIF or PGM/PPM bytes,
///   prepared as the model's data was (Predictor::prepare_picture, as
///   `capsnet predict` prepares a file: digits as MNIST was made, other
///   models' pictures converted to C channels, resized and centre-cropped);
/// - application/json: C * S * S numbers in [0, 1], channel after channel,
///   each row-major (the tensor's own order; one channel: ink bright for a
///   digit model), used as they are (as `capsnet predict` uses IDX images),
///   either as an array or as {"pixels": [...]}.
/// Throws ApiError: 415 for another content type, 400 for a body that is not
/// what its type says or has the wrong number or range of values.
/// With a `budget`, a picture's pixels are reserved from it while it is
/// decoded: ApiError 413 for a picture over the whole budget, 503 when the
/// pictures being decoded leave too little.
at::Tensor parse_predict_body(const std::string& body, const std::string& content_type,
                              const Predictor& predictor, DecodeBudget* budget = nullptr);

/// A POST /api/reconstruct body: {"capsule": k, "vector": [D numbers]} and
/// optionally "format": "pixels" (the default: JSON) or "png".
struct ReconstructRequest {
  int64_t capsule = 0;       ///< k: the class capsule reconstructed from
  std::vector<float> vector; ///< the capsule's D components
  bool png = false;          ///< reply with a PNG ("format": "png"), else JSON pixels
};

/// Throws ApiError: 415 unless application/json, 400 for bad JSON or a
/// missing or mistyped field, 422 for a capsule index outside [0, classes)
/// or a vector of another length than `dim`, with a component that is not
/// finite or beyond kMaxCapsuleComponent.
ReconstructRequest parse_reconstruct_body(const std::string& body, const std::string& content_type,
                                          int64_t classes, int64_t dim);

/// What the page and clients learn of the model (GET /healthz): {"side" and
/// "image_size" (S), "channels" (C), "classes" (K), "capsule_dim" (D),
/// "class_names": [K] (indices as text when the data set named none),
/// "preparation": "digit" or "resize"}.
nlohmann::json model_info(const Predictor& predictor);

/// The reply of /api/predict for one image (`input` [1, C, S, S]): {"class",
/// "class_name", "lengths": [K], "capsules": [K][D], "input": [C * S * S] (the
/// preprocessed image, what the network saw, in parse_predict_body's order),
/// "channels", "side"}.
nlohmann::json predict_reply(const Classification& result, const at::Tensor& input,
                             const DataShape& shape);

/// The reply of /api/reconstruct as JSON (`image` [1, C, S, S]): {"capsule",
/// "channels", "side", "pixels": [C * S * S]}.
nlohmann::json reconstruct_reply(int64_t capsule, const at::Tensor& image);

/// The reconstruction `image` [1, C, S, S] in [0, 1] as the bytes of an
/// S x S PNG, grey for one channel, RGB for three.
std::string reconstruct_png(const at::Tensor& image);

/// {"error": message, "status": status}.
nlohmann::json error_reply(int status, const std::string& message);

/// The intra-op threads a batch of `batch` images runs on, out of `threads`:
/// one per 8 images, at least one. The inference thread is not the process's
/// first, and there waking a second OpenMP thread for a few images costs more
/// than it gains (measured in docs/serve.md, "Threads per batch").
int threads_for_batch(int64_t batch, int threads);

/// One thread runs every inference. Callers on any thread queue an image or
/// a capsule and wait; the thread takes everything waiting (up to max_batch
/// of each kind) and runs it as one batch, so concurrent requests share a
/// forward pass and nothing waits for a timer. With max_queue > 0, a request
/// that finds max_queue others waiting is refused at once (ApiError 503)
/// rather than queued. `metrics`, when given, gets every batch's size and time.
/// A batch runs on threads_for_batch() of the intra-op threads set when the
/// BatchingPredictor was made (OpenMP builds of LibTorch; at::set_num_threads
/// also sets the count that threads computing for the first time later
/// start with, which in serve are only the connection threads' decoding).
class BatchingPredictor {
 public:
  /// Starts the inference thread of `predictor`; max_batch, max_queue and metrics as above.
  BatchingPredictor(Predictor& predictor, int64_t max_batch = 64, int64_t max_queue = 0,
                    ServeMetrics* metrics = nullptr);
  ~BatchingPredictor(); ///< finishes what is queued, then stops the thread
  BatchingPredictor(const BatchingPredictor&) = delete;
  BatchingPredictor& operator=(const BatchingPredictor&) = delete;

  /// image float [1, C, S, S] -> its classification (batch of one);
  /// `batch`, when given, receives the size of the batch it ran in.
  Classification classify(const at::Tensor& image, int64_t* batch = nullptr);
  /// capsules float [1, K, D], class -> reconstruction [1, C, S, S].
  at::Tensor reconstruct(const at::Tensor& capsules, int64_t capsule, int64_t* batch = nullptr);
  /// Requests waiting now.
  int64_t queue_depth() const;
  /// The predictor it runs (its model's sizes, class names and preparation).
  const Predictor& predictor() const { return predictor_; }

  /// What the thread has run so far.
  struct Stats {
    /// \var batches
    /// Batches run.
    /// \var images
    /// Requests run in them (images and capsules).
    /// \var largest
    /// Requests in the largest batch.
    int64_t batches = 0, images = 0, largest = 0;
    /// The intra-op threads the last batch ran on (at::get_num_threads() in the inference thread).
    int threads = 0;
  };
  /// The batches run so far, counted before their callers are answered.
  Stats stats() const;

 private:
  struct Answer {
    std::vector<at::Tensor> tensors;
    int64_t batch = 0; // the size of the batch it ran in
  };
  struct Job {
    at::Tensor input; // image [1, C, S, S] or capsules [1, K, D]
    int64_t capsule = -1; // >= 0: a reconstruction
    std::promise<Answer> done;
  };
  Answer submit(at::Tensor input, int64_t capsule);
  void run();

  Predictor& predictor_;
  int64_t max_batch_, max_queue_;
  int threads_; // the intra-op threads at construction: the most a batch runs on
  ServeMetrics* metrics_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

} // namespace capsnet::serve
