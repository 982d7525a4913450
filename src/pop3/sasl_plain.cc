#include "pop3/sasl_plain.h"

#include <cstdint>

namespace holdfast::pop3 {

namespace {

// The 6-bit value of a base64 character, or -1.
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

Result<std::string> DecodeBase64(std::string_view text, size_t max_decoded) {
  if (text.size() % 4 != 0) return Status::Invalid("base64 length is not a multiple of 4");
  // Checked before decoding, so a huge input costs nothing.
  if (text.size() / 4 > max_decoded / 3 + 1) return Status::Invalid("base64 text too long");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  for (size_t i = 0; i < text.size() - pad; ++i) {
    int v = Base64Value(text[i]);
    if (v < 0) return Status::Invalid(text[i] == '=' ? "base64 padding in the middle" : "invalid base64 character");
    acc = acc << 6 | static_cast<uint32_t>(v);
    if (i % 4 == 3) {
      out.push_back(static_cast<char>(acc >> 16));
      out.push_back(static_cast<char>(acc >> 8));
      out.push_back(static_cast<char>(acc));
      acc = 0;
    }
  }
  // The last group: 2 characters give 1 byte, 3 give 2; the rest must be 0.
  if (pad == 2) {
    if (acc & 0xf) return Status::Invalid("base64 pad bits are not zero");
    out.push_back(static_cast<char>(acc >> 4));
  } else if (pad == 1) {
    if (acc & 0x3) return Status::Invalid("base64 pad bits are not zero");
    out.push_back(static_cast<char>(acc >> 10));
    out.push_back(static_cast<char>(acc >> 2));
  }
  if (out.size() > max_decoded) return Status::Invalid("base64 text too long");
  return out;
}

Result<PlainCredentials> ParsePlainMessage(std::string_view message) {
  size_t nul1 = message.find('\0');
  if (nul1 == std::string_view::npos) return Status::Invalid("PLAIN message has no NUL separator");
  size_t nul2 = message.find('\0', nul1 + 1);
  if (nul2 == std::string_view::npos) return Status::Invalid("PLAIN message has only one NUL separator");
  if (message.find('\0', nul2 + 1) != std::string_view::npos) {
    return Status::Invalid("PLAIN message has more than two NUL separators");
  }
  PlainCredentials c;
  c.authzid = message.substr(0, nul1);
  c.authcid = message.substr(nul1 + 1, nul2 - nul1 - 1);
  c.password = message.substr(nul2 + 1);
  if (c.authcid.empty()) return Status::Invalid("PLAIN message has an empty user name");
  if (c.password.empty()) return Status::Invalid("PLAIN message has an empty password");
  if (!ValidUtf8(c.authzid) || !ValidUtf8(c.authcid) || !ValidUtf8(c.password)) {
    return Status::Invalid("PLAIN message is not valid UTF-8");
  }
  if (!c.authzid.empty() && c.authzid != c.authcid) {
    return Status::Invalid("authorization identity must be empty or equal to the user name");
  }
  return c;
}

Result<PlainCredentials> DecodePlainResponse(std::string_view base64) {
  HF_ASSIGN_OR_RETURN(std::string message, DecodeBase64(base64, kMaxPlainMessage));
  return ParsePlainMessage(message);
}

}  // namespace holdfast::pop3
