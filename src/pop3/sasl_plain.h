// SASL PLAIN (RFC 4616) as POP3 AUTH carries it (RFC 5034): a base64 line
// holding "authzid NUL authcid NUL passwd". Both decoders are strict, because
// what they accept is what reaches the password check.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "util/status.h"

namespace holdfast::pop3 {

// Well above the 3 x 255 octets RFC 4616 requires a server to accept.
inline constexpr size_t kMaxPlainMessage = 2048;

// RFC 4648 section 4 base64, canonical form only: the standard alphabet,
// length a multiple of 4, '=' only as the final padding, zero pad bits, no
// whitespace. Anything else, or more than `max_decoded` bytes of output, is
// kInvalid. ("" decodes to "".) OpenSSL's EVP_DecodeBlock skips whitespace
// and keeps pad bits, so it is not used here.
Result<std::string> DecodeBase64(std::string_view text, size_t max_decoded);

struct PlainCredentials {
  std::string authzid;   // empty, or equal to authcid
  std::string authcid;   // the user name as the client gave it
  std::string password;
};

// Parses a decoded PLAIN message. kInvalid unless it has exactly two NULs,
// a non-empty authcid and password, valid UTF-8 in every field, and an
// authzid that is empty or equal to authcid: holdfast has no proxy users, so
// acting as someone else is refused outright.
Result<PlainCredentials> ParsePlainMessage(std::string_view message);

// DecodeBase64 (at most kMaxPlainMessage bytes), then ParsePlainMessage.
Result<PlainCredentials> DecodePlainResponse(std::string_view base64);

}  // namespace holdfast::pop3
