#pragma once

// `capsnet serve`'s counters and histograms, written in Prometheus's text
// exposition format (GET /metrics): requests by path and status, latency by
// path, the batch sizes and inference times of the batching thread,
// refusals by reason, with the gauges the caller passes in.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace capsnet::serve {

/// A histogram over fixed upper bounds (Prometheus's cumulative buckets,
/// +Inf implied), its sum and count.
class Histogram {
 public:
  /// Buckets with upper `bounds`, ascending.
  explicit Histogram(std::vector<double> bounds);
  /// Counts `value` in its bucket, the sum and the count.
  void observe(double value);
  /// Appends NAME_bucket{LABELS,le=...}, NAME_sum and NAME_count lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  /// Values observed so far.
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_; // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

/// Everything the server counts. Thread-safe.
class ServeMetrics {
 public:
  ServeMetrics();
  /// An answered request: its route ("/api/predict", ... or "other"), status,
  /// seconds (negative: unknown, counted without a latency).
  void request(const std::string& path, int status, double seconds);
  /// One batch of the inference thread: its size and seconds.
  void batch(int64_t size, double seconds);
  /// A connection or request refused: "client_connections", "server_connections",
  /// "queue_full", "unauthorized", "deadline".
  void refused(const std::string& reason, int64_t count = 1);

  /// What the caller measures at the moment, for GET /metrics.
  struct Gauges {
    /// \var queue_depth
    /// Requests waiting for the inference thread.
    /// \var connections
    /// Open HTTP connections.
    /// \var resident_bytes
    /// The process's resident memory in bytes (resident_bytes()).
    int64_t queue_depth = 0, connections = 0, resident_bytes = 0;
  };
  /// The text of GET /metrics.
  std::string render(const Gauges& gauges) const;

  /// Requests answered so far with (path, status).
  int64_t requests(const std::string& path, int status) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram batch_sizes_, inference_seconds_;
  std::map<std::string, int64_t> refused_;
};

/// The routes the metrics name; any other path is counted as "other" (a
/// scanner's paths must not grow the label set without bound).
std::string metrics_path(const std::string& path);

/// This process's resident memory in bytes (/proc/self/statm), 0 if unknown.
int64_t resident_bytes();

} // namespace capsnet::serve
