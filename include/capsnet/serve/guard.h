#pragma once

// What keeps `capsnet serve` usable when shared: bearer tokens compared in
// constant time, the loopback test behind --host's refusal, and a bound on
// connections per client address and in all. The HTTP server around them is
// apps/capsnet/serve_command.cpp.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace capsnet::serve {

/// a == b, in time that depends on the lengths only, not on where they differ.
bool tokens_equal(std::string_view a, std::string_view b);

/// The token of an "Authorization: Bearer TOKEN" header (scheme case-insensitive),
/// or nothing for another scheme or a malformed value.
std::optional<std::string> bearer_token(const std::string& authorization);

/// Whether `host` is a loopback address (127.0.0.0/8, ::1) or "localhost":
/// a server listening there is reachable from this machine only.
bool is_loopback_host(const std::string& host);

/// Connections open per client address and in all, and admission against
/// both limits.
class ConnectionLimiter {
 public:
  enum class Verdict { kAdmitted, kClientFull, kServerFull };
  ConnectionLimiter(int64_t max_total, int64_t max_per_client);
  /// Counts the connection when it is admitted; release() it when it closes.
  Verdict admit(const std::string& client);
  void release(const std::string& client);
  int64_t open() const;

 private:
  const int64_t max_total_, max_per_client_;
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> per_client_;
  int64_t total_ = 0;
};

} // namespace capsnet::serve
