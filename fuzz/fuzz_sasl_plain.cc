// AUTH PLAIN responses come from unauthenticated clients. The strict base64
// decoder must accept exactly the canonical encodings (so OpenSSL's encoder
// gives back the input), and a parsed PLAIN message must split cleanly.
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pop3/sasl_plain.h"

namespace {

constexpr size_t kMax = 4096;

std::string Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

void CheckPlain(std::string_view message) {
  auto c = holdfast::pop3::ParsePlainMessage(message);
  if (!c.ok()) return;
  if (c->authcid.empty() || c->password.empty()) __builtin_trap();
  if (!c->authzid.empty() && c->authzid != c->authcid) __builtin_trap();
  if ((c->authzid + '\0' + c->authcid + '\0' + c->password) != message) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto decoded = holdfast::pop3::DecodeBase64(input, kMax);
  if (decoded.ok()) {
    if (decoded->size() > kMax || Encode(*decoded) != input) __builtin_trap();
    CheckPlain(*decoded);
  }
  // Whatever OpenSSL encodes, the strict decoder reads back.
  if (size <= kMax) {
    auto back = holdfast::pop3::DecodeBase64(Encode(input), kMax);
    if (!back.ok() || *back != input) __builtin_trap();
  }
  CheckPlain(input);
  auto response = holdfast::pop3::DecodePlainResponse(input);
  if (response.ok() && !decoded.ok()) __builtin_trap();
  return 0;
}
