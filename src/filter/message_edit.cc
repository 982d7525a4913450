#include "filter/message_edit.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace holdfast {
namespace {

constexpr size_t kMaxHeaderName = 76;
constexpr size_t kMaxHeaderValue = 4096;
constexpr size_t kMaxLine = 998;  // RFC 5322 2.1.1

bool EqualNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// One header field: [begin, end) holds its first line, its folded
// continuation lines and their line endings.
struct Field {
  size_t begin, end;
  std::string_view name;  // before the ':', trailing blanks dropped; "" when the line has no ':'
};

// The fields of the header section, which ends at the first empty line.
std::vector<Field> HeaderFields(std::string_view msg) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t lf = msg.find('\n', pos);
    size_t next = lf == std::string_view::npos ? msg.size() : lf + 1;
    std::string_view line = msg.substr(pos, next - pos);
    if (line == "\n" || line == "\r\n") break;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().end = next;
    } else {
      auto colon = line.find(':');
      std::string_view name = colon == std::string_view::npos ? std::string_view() : line.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      out.push_back({pos, next, name});
    }
    pos = next;
  }
  return out;
}

// The value with each fold's line break written as `eol`.
std::string WithLineEnding(std::string_view value, std::string_view eol) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
    if (value[i] == '\n') out += eol;
    else out += value[i];
  }
  return out;
}

}  // namespace

std::string_view MessageLineEnding(std::string_view message) {
  auto lf = message.find('\n');
  return (lf != std::string_view::npos && lf > 0 && message[lf - 1] == '\r') ? "\r\n" : "\n";
}

Status CheckHeaderField(std::string_view name, std::string_view value) {
  if (name.empty() || name.size() > kMaxHeaderName) return Status::Invalid("header name must be 1 to 76 bytes");
  for (char c : name) {
    if (c < 33 || c > 126 || c == ':') return Status::Invalid("header name may hold only printable ASCII but ':'");
  }
  if (value.size() > kMaxHeaderValue) return Status::Invalid("header value over 4096 bytes");
  size_t line = name.size() + 2;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\0') return Status::Invalid("NUL in header value");
    if (c == '\r' && !(i + 1 < value.size() && value[i + 1] == '\n')) return Status::Invalid("bare CR in header value");
    if (c == '\n') {
      if (i + 1 == value.size() || (value[i + 1] != ' ' && value[i + 1] != '\t'))
        return Status::Invalid("line break in header value that is not a fold");
      line = 0;
      continue;
    }
    if (c != '\r' && ++line > kMaxLine) return Status::Invalid("header line over 998 bytes");
  }
  return Status::Ok();
}

std::string FormatHeaders(std::string_view message, const std::vector<HeaderField>& headers) {
  const std::string_view eol = MessageLineEnding(message);
  std::string out;
  for (const auto& [name, value] : headers) {
    out.append(name).append(": ").append(WithLineEnding(value, eol)).append(eol);
  }
  return out;
}

std::string PrependHeaders(std::string_view message, const std::vector<HeaderField>& headers) {
  std::string out = FormatHeaders(message, headers);
  out.append(message);
  return out;
}

std::string ReceivedValue(std::string_view helo, std::string_view client_in, std::string_view hostname,
                          const MessageId& id) {
  std::string client(client_in);
  if (client != "local") {
    // "127.0.0.1:40000" -> 127.0.0.1, "[::1]:40000" or "::1:40000" -> ::1
    size_t colon = client.rfind(':');
    if (colon != std::string::npos) client = client.substr(0, colon);
    if (client.size() > 1 && client.front() == '[' && client.back() == ']') client = client.substr(1, client.size() - 2);
  }
  char date[64];
  const std::time_t t = static_cast<std::time_t>(id.UnixMillis() / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string value = "from " + EscapeLine(helo.empty() ? "unknown" : helo, 200) + " (" +
                      (client == "local" ? std::string("local") : "[" + EscapeLine(client, 64) + "]") + ")\r\n\tby " +
                      EscapeLine(hostname.empty() ? "localhost" : hostname, 253) + " (holdfast) with LMTP id " +
                      id.ToString() + ";\r\n\t" + date;
  // Every piece is escaped and bounded, so this is a guard, not a path.
  if (!CheckHeaderField("Received", value).ok()) value = "by holdfast id " + id.ToString() + "; " + date;
  return value;
}

std::string RemoveHeader(std::string_view message, std::string_view name) {
  std::string out;
  size_t copied = 0;
  for (const Field& f : HeaderFields(message)) {
    if (!EqualNoCase(f.name, name)) continue;
    out.append(message.substr(copied, f.begin - copied));
    copied = f.end;
  }
  out.append(message.substr(copied));
  return out;
}

std::string SetSubject(std::string_view message, std::string_view subject) {
  std::string clean(subject.substr(0, kMaxLine - 9));
  for (char& c : clean) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  const std::string_view eol = MessageLineEnding(message);
  std::string line = "Subject: " + clean + std::string(eol);
  for (const Field& f : HeaderFields(message)) {
    if (EqualNoCase(f.name, "Subject")) {
      return std::string(message.substr(0, f.begin)) + line + std::string(message.substr(f.end));
    }
  }
  return line + std::string(message);
}

Status CheckFolderName(std::string_view name) {
  if (name.empty() || name.size() > 64) return Status::Invalid("folder name must be 1 to 64 bytes");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.';
    if (!ok) return Status::Invalid("folder name may hold only letters, digits, '-', '_' and '.'");
  }
  if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos)
    return Status::Invalid("folder name must not start or end with '.' or hold \"..\"");
  return Status::Ok();
}

std::string EscapeLine(std::string_view s, size_t max) {
  std::string out;
  for (char c : s) {
    std::string piece;
    auto u = static_cast<unsigned char>(c);
    if (c == '\n') piece = "\\n";
    else if (c == '\r') piece = "\\r";
    else if (c == '\t') piece = "\\t";
    else if (c == '\\') piece = "\\\\";
    else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      piece = buf;
    } else {
      piece = std::string(1, c);
    }
    if (out.size() + piece.size() > max) return out + "...";
    out += piece;
  }
  return out;
}

}  // namespace holdfast
