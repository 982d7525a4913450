#include "store/maildir_name.h"

#include <charconv>

namespace holdfast {
namespace {

template <typename T>
std::optional<T> ParseNumber(std::string_view s) {
  T v{};
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<MaildirName> ParseMaildirName(std::string_view name) {
  if (name.empty() || name.front() == '.') return std::nullopt;
  MaildirName out;
  auto colon = name.find(':');
  out.base = std::string(name.substr(0, colon));
  if (out.base.empty()) return std::nullopt;
  if (colon != std::string_view::npos) {
    std::string_view info = name.substr(colon + 1);
    if (info.substr(0, 2) == "2,") out.flags = std::string(info.substr(2));
  }
  // ",KEY=VALUE" fields after the first ','.
  std::string_view rest = out.base;
  auto comma = rest.find(',');
  std::string_view unique = rest.substr(0, comma);
  while (comma != std::string_view::npos) {
    rest = rest.substr(comma + 1);
    comma = rest.find(',');
    std::string_view field = rest.substr(0, comma);
    if (field.size() > 2 && field[1] == '=') {
      std::string_view value = field.substr(2);
      switch (field[0]) {
        case 'S': out.size = ParseNumber<uint64_t>(value); break;
        case 'W': out.vsize = ParseNumber<uint64_t>(value); break;
        case 'U': out.uid = ParseNumber<uint32_t>(value); break;
        default: break;
      }
    }
  }
  // holdfast's unique part: <secs>.<MessageId>.<host>
  auto dot1 = unique.find('.');
  if (dot1 != std::string_view::npos && ParseNumber<int64_t>(unique.substr(0, dot1))) {
    std::string_view after = unique.substr(dot1 + 1);
    auto dot2 = after.find('.');
    if (dot2 == MessageId::kTextLength) out.id = MessageId::Parse(after.substr(0, dot2));
  }
  if (out.uid && *out.uid == 0) out.uid.reset();
  if (!out.id) out.uid.reset();  // a foreign name's U= is not ours to trust
  return out;
}

std::string SanitizeHostForMaildir(std::string_view host) {
  std::string out;
  for (char c : host) {
    switch (c) {
      case '/': out += "\\057"; break;
      case ':': out += "\\072"; break;
      case ',': out += "\\054"; break;
      default:
        if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f) out += '_';
        else out += c;
    }
  }
  return out.empty() ? "localhost" : out;
}

std::string TmpName(int64_t unix_secs, const MessageId& id, std::string_view host) {
  return std::to_string(unix_secs) + "." + id.ToString() + "." + SanitizeHostForMaildir(host);
}

std::string FinalName(std::string_view tmp_name, uint64_t size, uint64_t vsize, uint32_t uid) {
  return std::string(tmp_name) + ",S=" + std::to_string(size) + ",W=" + std::to_string(vsize) +
         ",U=" + std::to_string(uid);
}

}  // namespace holdfast
