// CredentialsCache: recently verified logins, so that a client that logs in
// every minute does not pay a yescrypt check (~70 ms of CPU) every time.
// Modelled on Dovecot's auth_cache, but what it remembers is that a password
// verified, so a hit needs no hash at all.
//
// In memory only, per process. An entry is keyed by user and holds
// HMAC-SHA256(per-process random key, user NUL password) of the password
// that verified -- never the password, and nothing a stolen core dump could
// test guesses against without the key -- plus the users-file entry (hash)
// and the users-file generation it verified against, and when. It answers
// only for the same password, the same stored hash, the same generation of
// the users file (any change to the file invalidates every entry) and within
// the TTL. A failed verification is never remembered; a miss tells the
// caller nothing, so a wrong password still pays the full hash. Bounded:
// the least recently verified entry goes first. Thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace holdfast {

class CredentialsCache {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  explicit CredentialsCache(Clock now = [] { return std::chrono::steady_clock::now(); });

  // True iff `password` verified for `user` against `stored_hash` while the
  // users file was at `users_generation`, less than `ttl` ago. ttl 0: false.
  bool Verified(std::string_view user, std::string_view password, std::string_view stored_hash,
                uint64_t users_generation, std::chrono::milliseconds ttl);
  // Records a successful verification. Nothing when ttl is 0 or max_entries 0.
  void Remember(std::string_view user, std::string_view password, std::string_view stored_hash,
                uint64_t users_generation, std::chrono::milliseconds ttl, size_t max_entries);
  size_t size() const;

 private:
  using Mac = std::array<uint8_t, 32>;
  struct Entry {
    std::string user;
    Mac mac{};
    std::string stored_hash;
    uint64_t generation = 0;
    std::chrono::steady_clock::time_point verified_at;
  };
  bool MacOf(std::string_view user, std::string_view password, Mac* mac) const;

  Clock now_;
  std::array<uint8_t, 32> key_{};
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently verified first
  std::unordered_map<std::string, std::list<Entry>::iterator> by_user_;
};

}  // namespace holdfast
