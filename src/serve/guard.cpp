#include "capsnet/serve/guard.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <utility>

namespace capsnet::serve {

bool tokens_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer is read whatever the contents; the lengths are
  // folded into the result rather than tested first.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  // A volatile read keeps the compiler from ending the loop early.
  volatile unsigned char result = diff;
  return result == 0;
}

std::optional<std::string> bearer_token(const std::string& authorization) {
  const std::string scheme = "bearer ";
  if (authorization.size() <= scheme.size()) return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return std::nullopt;
  }
  auto token = authorization.substr(scheme.size());
  const auto first = token.find_first_not_of(' ');
  const auto last = token.find_last_not_of(' ');
  if (first == std::string::npos) return std::nullopt;
  token = token.substr(first, last - first + 1);
  if (token.find_first_of(" \t") != std::string::npos) return std::nullopt;
  return token;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.y.z
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

ConnectionLimiter::ConnectionLimiter(int64_t max_total, int64_t max_per_client)
    : max_total_(max_total), max_per_client_(max_per_client) {}

ConnectionLimiter::Verdict ConnectionLimiter::admit(const std::string& client) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (total_ >= max_total_) return Verdict::kServerFull;
  auto& mine = per_client_[client];
  if (mine >= max_per_client_) return Verdict::kClientFull;
  ++mine;
  ++total_;
  return Verdict::kAdmitted;
}

void ConnectionLimiter::release(const std::string& client) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = per_client_.find(client);
  if (it == per_client_.end()) return;
  --total_;
  if (--it->second <= 0) per_client_.erase(it);
}

int64_t ConnectionLimiter::open() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_;
}

DecodeBudget::DecodeBudget(int64_t max_pixels) : max_(max_pixels) {
  if (max_pixels <= 0) throw std::invalid_argument("the decode budget must be positive");
}

DecodeBudget::Lease& DecodeBudget::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (budget_) budget_->release(pixels_);
    budget_ = std::exchange(other.budget_, nullptr);
    pixels_ = std::exchange(other.pixels_, 0);
  }
  return *this;
}

DecodeBudget::Lease::~Lease() {
  if (budget_) budget_->release(pixels_);
}

DecodeBudget::Lease DecodeBudget::reserve(int64_t pixels, Refusal& refusal) {
  std::lock_guard<std::mutex> lock(mutex_);
  refusal = pixels > max_                  ? Refusal::kTooLarge
            : in_flight_ + pixels > max_   ? Refusal::kBusy
                                           : Refusal::kNone;
  if (refusal != Refusal::kNone) return {};
  in_flight_ += pixels;
  return {this, pixels};
}

int64_t DecodeBudget::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_flight_;
}

void DecodeBudget::release(int64_t pixels) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_flight_ -= pixels;
}

} // namespace capsnet::serve
