#include "lmtp/address.h"

#include <cstdio>

namespace holdfast::lmtp {

namespace {

std::string Describe(unsigned char c) {
  if (c == ' ') return "a space";
  char buf[32];
  std::snprintf(buf, sizeof buf, c < 0x80 ? "control byte 0x%02x" : "non-ASCII byte 0x%02x", c);
  return buf;
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 5322 atext, plus '.': dot placement is not policed, as Postfix does not.
bool IsDotStringChar(char c) {
  if (IsAlnum(c)) return true;
  for (char s : std::string_view("!#$%&'*+-/=?^_`{|}~.")) {
    if (c == s) return true;
  }
  return false;
}

// Host names, with '_' allowed because real DNS names carry it; or an
// address literal "[...]".
Status CheckDomain(std::string_view d) {
  if (d.empty()) return Status::Invalid("empty domain");
  if (d.front() == '[') {
    if (d.size() < 3 || d.back() != ']') return Status::Invalid("malformed address literal");
    for (char c : d.substr(1, d.size() - 2)) {
      if (c == '[' || c == ']' || c == '\\') return Status::Invalid("malformed address literal");
    }
    return Status::Ok();
  }
  size_t label = 0;
  for (char c : d) {
    if (c == '.') {
      if (label == 0) return Status::Invalid("empty label in domain");
      label = 0;
    } else if (IsAlnum(c) || c == '-' || c == '_') {
      ++label;
    } else {
      return Status::Invalid(std::string("domain contains '") + c + "'");
    }
  }
  if (label == 0) return Status::Invalid("empty label in domain");
  return Status::Ok();
}

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return r;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && Lower(a) == Lower(b);
}

}  // namespace

Result<std::string> ParsePath(std::string_view s) {
  if (s.empty()) return std::string();
  if (s.size() > kMaxAddressLength) {
    return Status::Invalid("address is longer than " + std::to_string(kMaxAddressLength) + " bytes");
  }
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return Status::Invalid("address contains " + Describe(u));
  }
  // RFC 5321 4.1.1.3: a source route must be accepted and may be ignored.
  if (s.front() == '@') {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos) return Status::Invalid("source route without ':'");
    std::string_view route = s.substr(0, colon);
    while (!route.empty()) {
      size_t comma = route.find(',');
      std::string_view hop = route.substr(0, comma);
      if (hop.empty() || hop.front() != '@') return Status::Invalid("malformed source route");
      HF_RETURN_IF_ERROR(CheckDomain(hop.substr(1)));
      route = comma == std::string_view::npos ? std::string_view() : route.substr(comma + 1);
      if (comma != std::string_view::npos && route.empty()) return Status::Invalid("malformed source route");
    }
    s = s.substr(colon + 1);
    if (s.empty()) return Status::Invalid("source route without a mailbox");
  }

  size_t local_end;
  if (s.front() == '"') {
    size_t i = 1;
    while (i < s.size() && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
    if (i >= s.size()) return Status::Invalid("unterminated quoted local part");
    local_end = i + 1;
    if (local_end < s.size() && s[local_end] != '@') {
      return Status::Invalid("text after quoted local part");
    }
  } else {
    local_end = s.find('@');
    if (local_end == std::string_view::npos) local_end = s.size();
    for (char c : s.substr(0, local_end)) {
      if (!IsDotStringChar(c)) return Status::Invalid(std::string("local part contains '") + c + "'");
    }
  }
  if (local_end == 0) return Status::Invalid("empty local part");
  // A bare local part ("postmaster") is allowed: RFC 5321 4.5.1 requires
  // <Postmaster>, and whether other bare names deliver is the resolver's call.
  if (local_end < s.size()) HF_RETURN_IF_ERROR(CheckDomain(s.substr(local_end + 1)));
  return std::string(s);
}

std::optional<LocalTarget> MapAddressToUser(std::string_view address,
                                            const std::vector<std::string>& local_domains) {
  // Quoted local parts could smuggle any byte into a user name; no real
  // mailbox here needs one.
  if (address.empty() || address.front() == '"') return std::nullopt;
  size_t at = address.rfind('@');
  std::string_view local = address.substr(0, at);
  std::string_view domain = at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
  if (local.empty() || (at != std::string_view::npos && domain.empty())) return std::nullopt;

  LocalTarget t;
  size_t plus = local.find('+');
  if (plus != std::string_view::npos && plus > 0) {
    t.detail = std::string(local.substr(plus + 1));
    local = local.substr(0, plus);
  }
  t.user = Lower(local);
  if (at != std::string_view::npos) {
    bool is_local = false;
    for (const std::string& d : local_domains) is_local = is_local || EqualsIgnoreCase(d, domain);
    // Mail for other domains goes to full-address virtual users.
    if (!is_local) t.user += "@" + Lower(domain);
  }
  return t;
}

}  // namespace holdfast::lmtp
