#include "users/user_name.h"

#include <cstdio>

namespace holdfast {

namespace {

// Names the offending byte so the message is readable even for binary input.
std::string Describe(unsigned char c) {
  switch (c) {
    case '\0': return "a NUL byte";
    case ' ': return "a space";
    case '\t': return "a tab";
    case '\r': return "a carriage return";
    case '\n': return "a line feed";
    default: break;
  }
  char buf[32];
  if (c < 0x20 || c == 0x7f) {
    std::snprintf(buf, sizeof buf, "control byte 0x%02x", c);
  } else if (c >= 0x80) {
    std::snprintf(buf, sizeof buf, "non-ASCII byte 0x%02x", c);
  } else {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  }
  return buf;
}

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

Result<UserName> UserName::Parse(std::string_view raw) {
  if (raw.empty()) return Status::Invalid("user name is empty");
  if (raw.size() > kMaxLength) {
    return Status::Invalid("user name is longer than " + std::to_string(kMaxLength) + " bytes");
  }
  std::string name(raw);
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (char c : name) {
    if (IsAlnum(c) || c == '.' || c == '_' || c == '-' || c == '@') continue;
    if (c == '+') {
      return Status::Invalid("user name contains '+' (reserved for user+tag addressing)");
    }
    return Status::Invalid("user name contains " + Describe(static_cast<unsigned char>(c)));
  }
  if (!IsAlnum(name[0])) {
    return Status::Invalid("user name must start with a letter or digit");
  }
  if (name.find("..") != std::string::npos) {
    return Status::Invalid("user name contains '..'");
  }
  return UserName(std::move(name));
}

}  // namespace holdfast
