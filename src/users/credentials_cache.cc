#include "users/credentials_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

namespace holdfast {

CredentialsCache::CredentialsCache(Clock now) : now_(std::move(now)) {
  // Without a key the MACs would be guessable offline: refuse to run rather
  // than cache with a weak one.
  if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1) std::abort();
}

bool CredentialsCache::MacOf(std::string_view user, std::string_view password, Mac* mac) const {
  std::string msg;
  msg.reserve(user.size() + 1 + password.size());
  msg.append(user).push_back('\0');  // a user name never holds NUL: no two pairs give one message
  msg.append(password);
  unsigned int len = 0;
  bool ok = HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
                 reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac->data(), &len) != nullptr &&
            len == mac->size();
  OPENSSL_cleanse(msg.data(), msg.size());
  return ok;  // if not, the caller neither trusts nor stores it
}

bool CredentialsCache::Verified(std::string_view user, std::string_view password, std::string_view stored_hash,
                                uint64_t users_generation, std::chrono::milliseconds ttl) {
  Mac mac{};
  if (ttl.count() <= 0 || !MacOf(user, password, &mac)) return false;
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_user_.find(std::string(user));
  if (it == by_user_.end()) return false;
  const Entry& e = *it->second;
  if (e.generation != users_generation || e.stored_hash != stored_hash || now_() - e.verified_at >= ttl) {
    // Stale for any password: the users file changed or the entry expired.
    lru_.erase(it->second);
    by_user_.erase(it);
    return false;
  }
  return CRYPTO_memcmp(e.mac.data(), mac.data(), mac.size()) == 0;
}

void CredentialsCache::Remember(std::string_view user, std::string_view password, std::string_view stored_hash,
                                uint64_t users_generation, std::chrono::milliseconds ttl, size_t max_entries) {
  Mac mac{};
  if (ttl.count() <= 0 || max_entries == 0 || !MacOf(user, password, &mac)) return;
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_user_.find(std::string(user));
  if (it != by_user_.end()) {
    lru_.erase(it->second);
    by_user_.erase(it);
  }
  lru_.push_front(Entry{std::string(user), mac, std::string(stored_hash), users_generation, now_()});
  by_user_.emplace(lru_.front().user, lru_.begin());
  while (lru_.size() > max_entries) {
    by_user_.erase(lru_.back().user);
    lru_.pop_back();
  }
}

size_t CredentialsCache::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return lru_.size();
}

}  // namespace holdfast
