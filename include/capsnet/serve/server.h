#pragma once

// capsnet serve's HTTP server (cpp-httplib): the page, GET /healthz and
// /metrics, POST /api/predict and /api/reconstruct, with the limits that keep
// it usable when shared: a thread per connection up to a bound, connections
// per client address, a bearer token, TLS, a queue and a batch for inference,
// a budget of pictures decoded at once, and an access log. The API's bodies
// and replies are serve/api.h; the checks, serve/guard.h.

#include "capsnet/inference/inference.h"
#include "capsnet/ops/im2col_conv.h"

#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace capsnet::serve {

/// How Server listens and what it bounds: address, limits, token, TLS, log, model.
struct ServerOptions {
  std::string host = "127.0.0.1"; ///< the address listened on; beyond loopback, a token
  int port = 8080;               ///< 0: any free port (Server::port() says which)
  int64_t max_batch = 64;        ///< most waiting requests run as one batch
  int64_t max_queue = 256;       ///< most requests waiting for inference (0: no limit)
  int max_connections = 512;     ///< open connections, each on a thread of its own
  int max_client_connections = 64; ///< open connections per client address
  int timeout = 10;              ///< seconds to send a request, or idle between two
  /// Megapixels of uploaded pictures decoded at once; beyond, 503 (a picture
  /// larger than all of it: 413).
  int64_t decode_megapixels = 64;
  std::string token;             ///< required of /api/* and /metrics when not empty
  /// The certificate's PEM file; with tls_key, the server speaks HTTPS.
  std::string tls_cert, tls_key; ///< the certificate's key, a PEM file
  std::string access_log;        ///< a file to append one line per answer to; empty: none
  std::string checkpoint;        ///< what /healthz names as the model
  c10::Device device = c10::Device(c10::kCPU); ///< where the model runs
  Precision precision = Precision::kFp32;       ///< usable on `device` (usable_precision)
};

/// Refuses options that would share the server unsafely or cannot work: a
/// token under 16 characters or with spaces, a non-loopback host without a
/// token (unless `insecure_no_token`), --tls-cert without --tls-key. Throws
/// std::invalid_argument naming the option and the fix.
void check_access(const ServerOptions& options, bool insecure_no_token);

/// `capsnet serve`'s HTTP server: one model's page and API, within ServerOptions' limits.
class Server {
 public:
  /// Serves `predictor` on options.device at options.precision as `options`
  /// say, bound to its port already. Throws std::invalid_argument when the port
  /// cannot be bound, the TLS files are not a certificate and its key, or
  /// the access log cannot be written.
  Server(Predictor predictor, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The port bound.
  int port() const;
  /// The model served.
  const Predictor& predictor() const;
  /// Answers requests until stop(); false when the server failed.
  bool run();
  /// run() until `stop` turns true (polled every 100 ms: StopSignals::stop()),
  /// calling `on_stop` first when it does.
  bool run_until(const std::atomic<bool>& stop, const std::function<void()>& on_stop = {});
  /// What the server says when it starts: where it listens (with `#token=...`
  /// when it has a token), the model's inputs, its precision and device; with
  /// a token, how the page and API clients give it. Lines ending in newlines.
  std::string banner() const;
  /// Makes run() return (from any thread), after the answers under way.
  void stop();
  /// Requests answered by the API (predict and reconstruct).
  int64_t answered() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace capsnet::serve
