#include "capsnet/serve/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace capsnet::serve {

namespace {

const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};
const std::vector<double> kBatchBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

void help(std::string& out, const std::string& name, const std::string& type,
          const std::string& text) {
  out += "# HELP " + name + " " + text + "\n# TYPE " + name + " " + type + "\n";
}

} // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[size_t(at)];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : labels + ",";
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{" + sep + "le=\"" + number(bounds_[i]) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{" + sep + "le=\"+Inf\"} " + std::to_string(count_) + "\n";
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + braces + " " + number(sum_) + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

ServeMetrics::ServeMetrics() : batch_sizes_(kBatchBounds), inference_seconds_(kLatencyBounds) {}

void ServeMetrics::request(const std::string& path, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{path, status}];
  if (seconds >= 0) latency_.try_emplace(path, kLatencyBounds).first->second.observe(seconds);
}

void ServeMetrics::batch(int64_t size, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_sizes_.observe(double(size));
  inference_seconds_.observe(seconds);
}

void ServeMetrics::refused(const std::string& reason, int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  refused_[reason] += count;
}

int64_t ServeMetrics::requests(const std::string& path, int status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = requests_.find({path, status});
  return it == requests_.end() ? 0 : it->second;
}

std::string ServeMetrics::render(const Gauges& gauges) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  help(out, "capsnet_serve_requests_total", "counter", "HTTP requests answered, by route and status.");
  for (const auto& [key, count] : requests_) {
    out += "capsnet_serve_requests_total{path=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(count) + "\n";
  }
  help(out, "capsnet_serve_request_duration_seconds", "histogram",
       "Time from the request's arrival to its answer, by route.");
  for (const auto& [path, histogram] : latency_) {
    histogram.render(out, "capsnet_serve_request_duration_seconds", "path=\"" + path + "\"");
  }
  help(out, "capsnet_serve_batch_size", "histogram", "Requests run together in one inference batch.");
  batch_sizes_.render(out, "capsnet_serve_batch_size", "");
  help(out, "capsnet_serve_inference_seconds", "histogram", "Time of one inference batch.");
  inference_seconds_.render(out, "capsnet_serve_inference_seconds", "");
  help(out, "capsnet_serve_refused_total", "counter",
       "Connections and requests refused (503, 401) or cut at their deadline, by reason.");
  for (const auto& [reason, count] : refused_) {
    out += "capsnet_serve_refused_total{reason=\"" + reason + "\"} " + std::to_string(count) + "\n";
  }
  help(out, "capsnet_serve_queue_depth", "gauge", "Requests waiting for the inference thread.");
  out += "capsnet_serve_queue_depth " + std::to_string(gauges.queue_depth) + "\n";
  help(out, "capsnet_serve_connections", "gauge", "Open HTTP connections.");
  out += "capsnet_serve_connections " + std::to_string(gauges.connections) + "\n";
  help(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  out += "process_resident_memory_bytes " + std::to_string(gauges.resident_bytes) + "\n";
  return out;
}

std::string metrics_path(const std::string& path) {
  static const char* const kRoutes[] = {"/", "/healthz", "/metrics", "/api/predict",
                                        "/api/reconstruct"};
  for (const char* route : kRoutes) {
    if (path == route) return path;
  }
  return "other";
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * int64_t(sysconf(_SC_PAGESIZE));
}

} // namespace capsnet::serve
