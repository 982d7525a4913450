// Logger: one event a line, "TIMESTAMP LEVEL event key=value ...", to stderr
// or a file (reopened on SIGHUP for log rotation). Thread-safe.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace holdfast {

class Logger {
 public:
  enum Level { kDebug, kInfo, kWarn, kError };
  static Level ParseLevel(std::string_view s);

  Logger(Level level, std::string path);
  ~Logger();
  void Log(Level level, std::string_view line);
  void Info(std::string_view line) { Log(kInfo, line); }
  void Warn(std::string_view line) { Log(kWarn, line); }
  void Error(std::string_view line) { Log(kError, line); }
  void Reopen();
  void set_level(Level l);

 private:
  std::mutex mu_;
  Level level_;
  std::string path_;
  FILE* out_ = stderr;
};

// A value for a key=value log field: quoted when it holds a space, '"' or
// '=' (or is empty); control bytes become '?', so one event stays one line.
std::string Kv(std::string_view v);

}  // namespace holdfast
