#include "server/logger.h"

#include <chrono>
#include <ctime>

namespace holdfast {

Logger::Level Logger::ParseLevel(std::string_view s) {
  if (s == "debug") return kDebug;
  if (s == "warn") return kWarn;
  if (s == "error") return kError;
  return kInfo;
}

Logger::Logger(Level level, std::string path) : level_(level), path_(std::move(path)) { Reopen(); }

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
  std::setvbuf(out_, nullptr, _IOLBF, 0);
}

void Logger::set_level(Level l) {
  std::lock_guard<std::mutex> g(mu_);
  level_ = l;
}

void Logger::Log(Level level, std::string_view line) {
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard<std::mutex> l(mu_);
  if (level < level_) return;
  std::fprintf(out_, "%s.%03dZ %s %.*s\n", ts, ms, kNames[level], static_cast<int>(line.size()), line.data());
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
