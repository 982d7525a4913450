#include "users/password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace holdfast {

namespace {

static_assert(kMaxPasswordLength < CRYPT_MAX_PASSPHRASE_SIZE);

constexpr std::string_view kCryptPrefixes[] = {"{CRYPT}", "{SHA512-CRYPT}", "{SHA256-CRYPT}",
                                               "{BLF-CRYPT}"};

// crypt_data is ~32 KiB: keep it off the stack, and wipe it afterwards since
// it holds key material.
struct CryptScratch {
  crypt_data data;
  CryptScratch() { std::memset(&data, 0, sizeof data); }
  ~CryptScratch() { OPENSSL_cleanse(&data, sizeof data); }
};

}  // namespace

Status CheckPassword(std::string_view password) {
  if (password.empty()) return Status::Invalid("password is empty");
  if (password.size() > kMaxPasswordLength) {
    return Status::Invalid("password is longer than " + std::to_string(kMaxPasswordLength) + " bytes");
  }
  for (char c : password) {
    if (c == '\0') return Status::Invalid("password contains a NUL byte");
    if (c == '\r' || c == '\n') return Status::Invalid("password contains a line break");
  }
  return Status::Ok();
}

Result<std::string> HashPassword(std::string_view password) {
  HF_RETURN_IF_ERROR(CheckPassword(password));
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // rbytes == nullptr: libxcrypt draws the salt from the OS (getrandom).
  if (crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof setting) == nullptr) {
    return Status::Io("crypt_gensalt_rn($y$) failed", errno);
  }
  auto scratch = std::make_unique<CryptScratch>();
  std::string pw(password);  // crypt(3) wants a NUL-terminated string
  const char* out = crypt_rn(pw.c_str(), setting, &scratch->data, sizeof scratch->data);
  OPENSSL_cleanse(pw.data(), pw.size());
  // On failure crypt_rn returns NULL or a "*"-prefixed token, never a hash.
  if (out == nullptr || out[0] != '$') return Status::Io("crypt_rn(yescrypt) failed", errno);
  return "{CRYPT}" + std::string(out);
}

bool VerifyPassword(std::string_view password, std::string_view stored) {
  if (!CheckPassword(password).ok()) return false;
  std::string_view hash = stored;
  if (!hash.empty() && hash[0] == '{') {
    bool known = false;
    for (std::string_view p : kCryptPrefixes) {
      if (hash.substr(0, p.size()) == p) {
        hash.remove_prefix(p.size());
        known = true;
        break;
      }
    }
    if (!known) return false;
  }
  // Only modular "$id$" strings: rules out legacy DES and the "*" failure
  // tokens, which would otherwise compare equal to a failed crypt_rn.
  if (hash.size() < 3 || hash[0] != '$' || hash.size() >= CRYPT_OUTPUT_SIZE) return false;
  if (hash.find('\0') != std::string_view::npos) return false;

  auto scratch = std::make_unique<CryptScratch>();
  std::string pw(password);
  std::string setting(hash);
  const char* out = crypt_rn(pw.c_str(), setting.c_str(), &scratch->data, sizeof scratch->data);
  OPENSSL_cleanse(pw.data(), pw.size());
  if (out == nullptr || out[0] != '$') return false;
  size_t n = std::strlen(out);
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

std::string GeneratePassword() {
  static constexpr char kAlphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  constexpr unsigned kSize = sizeof kAlphabet - 1;            // 56
  constexpr unsigned kLimit = 256 - (256 % kSize);            // rejection bound: no modulo bias
  constexpr size_t kLength = 20;
  std::string out;
  unsigned char buf[64];
  while (out.size() < kLength) {
    ssize_t got = getrandom(buf, sizeof buf, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      // No kernel randomness: a predictable password is worse than no password.
      std::abort();
    }
    for (ssize_t i = 0; i < got && out.size() < kLength; ++i) {
      if (buf[i] < kLimit) out.push_back(kAlphabet[buf[i] % kSize]);
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return out;
}

}  // namespace holdfast
