#include "server/logger.h"

#include <cctype>
#include <chrono>
#include <ctime>
#include <set>
#include <vector>

#include "core/message_id.h"

namespace holdfast {

Logger::Level Logger::ParseLevel(std::string_view s) {
  if (s == "debug") return kDebug;
  if (s == "warn") return kWarn;
  if (s == "error") return kError;
  return kInfo;
}

Logger::Logger(Level level, std::string path, bool json) : level_(level), json_(json), path_(std::move(path)) {
  Reopen();
}

void Logger::set_json(bool json) {
  std::lock_guard<std::mutex> g(mu_);
  json_ = json;
}

Logger::~Logger() {
  if (out_ != stderr) std::fclose(out_);
}

void Logger::Reopen() {
  std::lock_guard<std::mutex> l(mu_);
  if (path_.empty()) return;
  // The log is not mail: appending to it needs no crash safety, so it is not
  // routed through Fs.
  FILE* f = std::fopen(path_.c_str(), "a");
  if (f == nullptr) return;  // keep the old stream rather than lose lines
  if (out_ != stderr) std::fclose(out_);
  out_ = f;
  std::setvbuf(out_, nullptr, _IOFBF, 64 * 1024);  // flushed after each call
}

void Logger::set_level(Level l) {
  std::lock_guard<std::mutex> g(mu_);
  level_ = l;
}

void Logger::Log(Level level, std::string_view line) { Lines(level, {std::string(line)}); }

void Logger::Lines(Level level, const std::vector<std::string>& lines) {
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  if (lines.empty()) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32], stamp[40];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp, sizeof stamp, "%s.%03dZ", ts, ms);
  std::lock_guard<std::mutex> l(mu_);
  if (level < level_) return;
  // All lines in one write: on a busy server a system call per line costs
  // more than formatting them.
  std::string out;
  for (const std::string& line : lines) {
    if (json_) {
      out += FormatJson(stamp, kNames[level], line);
    } else {
      out += stamp;
      out += ' ';
      out += kNames[level];
      out += ' ';
      out += line;
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), out_);
  std::fflush(out_);
}

std::string Kv(std::string_view v) {
  std::string out;
  bool quote = v.empty() || v.find_first_of(" \"=") != std::string_view::npos;
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') out += '\\';
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return quote ? "\"" + out + "\"" : out;
}

}  // namespace holdfast

namespace holdfast {
namespace {

void JsonString(std::string_view v, std::string* out) {
  *out += '"';
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      *out += buf;
    } else {
      *out += c;  // bytes >= 0x80 pass through: log values are UTF-8 or ASCII
    }
  }
  *out += '"';
}

// Splits a key=value line into words; a Kv-quoted value ("a b", with \"
// and \\ escapes) stays one word, unquoted.
std::vector<std::string> Words(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size()) break;
    std::string w;
    bool quoted = false;
    while (i < line.size() && (quoted || line[i] != ' ')) {
      char c = line[i++];
      if (c == '"') {
        quoted = !quoted;
      } else if (quoted && c == '\\' && i < line.size()) {
        w += line[i++];
      } else {
        w += c;
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

bool IsKey(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

std::string FormatJson(std::string_view time, std::string_view level, std::string_view line) {
  std::string out = "{\"time\":";
  JsonString(time, &out);
  out += ",\"level\":";
  JsonString(level, &out);
  std::set<std::string> seen{"time", "level", "msg"};
  std::string msg;
  for (const std::string& w : Words(line)) {
    size_t eq = w.find('=');
    if (eq != std::string::npos && IsKey(std::string_view(w).substr(0, eq))) {
      std::string key = w.substr(0, eq);
      if (!seen.insert(key).second) continue;
      out += ',';
      JsonString(key, &out);
      out += ':';
      JsonString(std::string_view(w).substr(eq + 1), &out);
      continue;
    }
    if (w.size() == MessageId::kTextLength && MessageId::Parse(w) && seen.insert("id").second) {
      out += ",\"id\":";
      JsonString(w, &out);
      continue;
    }
    msg += (msg.empty() ? "" : " ") + w;
  }
  if (!msg.empty()) {
    out += ",\"msg\":";
    JsonString(msg, &out);
  }
  return out + "}";
}

}  // namespace holdfast
