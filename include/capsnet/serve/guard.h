#pragma once

// What keeps `capsnet serve` usable when shared: bearer tokens compared in
// constant time, the loopback test behind --host's refusal, and a bound on
// connections per client address and in all, and a budget of the pictures
// decoded at once. The HTTP server around them is serve/server.h.

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
  /// What admit() decided: counted, or refused for the client's or the server's limit.
  enum class Verdict { kAdmitted, kClientFull, kServerFull };
  /// At most `max_total` connections open in all, `max_per_client` per client address.
  ConnectionLimiter(int64_t max_total, int64_t max_per_client);
  /// Counts the connection when it is admitted; release() it when it closes.
  Verdict admit(const std::string& client);
  /// Stops counting a connection of `client` that admit() admitted.
  void release(const std::string& client);
  /// Connections open now, in all.
  int64_t open() const;

 private:
  const int64_t max_total_, max_per_client_;
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> per_client_;
  int64_t total_ = 0;
};

/// Bounds the memory of the pictures decoded at once (uploads to
/// /api/predict): a decode reserves the picture's pixels, read from its
/// header, for as long as it runs. One 25-megapixel upload raised the
/// server's resident memory by about 43 MB; 512 of them at once would ask for
/// 22 GB.
class DecodeBudget {
 public:
  /// `max_pixels` in flight at once (> 0).
  explicit DecodeBudget(int64_t max_pixels);

  /// Pixels reserved until destroyed (movable).
  class Lease {
   public:
    Lease() = default;
    /// Holds `pixels` of `budget` (reserve() makes leases).
    Lease(DecodeBudget* budget, int64_t pixels) : budget_(budget), pixels_(pixels) {}
    /// Takes over `other`'s pixels, leaving it empty.
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    /// Releases the pixels held, then takes over `other`'s, leaving it empty.
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

   private:
    DecodeBudget* budget_ = nullptr;
    int64_t pixels_ = 0;
  };

  /// Why reserve() gave no pixels (kNone: it gave them).
  enum class Refusal { kNone, kTooLarge, kBusy };
  /// Reserves `pixels`; `refusal` says why not when the lease is empty:
  /// kTooLarge for a picture over the whole budget, kBusy when the pictures
  /// in flight leave too little (try again in a moment).
  Lease reserve(int64_t pixels, Refusal& refusal);
  /// Pixels reserved now.
  int64_t in_flight() const;
  /// The budget: pixels in flight at once.
  int64_t max_pixels() const { return max_; }

 private:
  void release(int64_t pixels);
  const int64_t max_;
  mutable std::mutex mutex_;
  int64_t in_flight_ = 0;
};

} // namespace capsnet::serve
