// Logger: one event a line, "TIMESTAMP LEVEL event key=value ...", to stderr
// or a file (reopened on SIGHUP for log rotation). Thread-safe. With
// log.format = "json" each line is a JSON object instead (FormatJson).
#pragma once

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast {

class Logger {
 public:
  enum Level { kDebug, kInfo, kWarn, kError };
  static Level ParseLevel(std::string_view s);

  Logger(Level level, std::string path, bool json = false);
  ~Logger();
  void Log(Level level, std::string_view line);
  void Info(std::string_view line) { Log(kInfo, line); }
  void Warn(std::string_view line) { Log(kWarn, line); }
  void Error(std::string_view line) { Log(kError, line); }
  // Several events with one write (and one timestamp).
  void Lines(Level level, const std::vector<std::string>& lines);
  void Reopen();
  void set_level(Level l);
  void set_json(bool json);

 private:
  std::mutex mu_;
  Level level_;
  bool json_ = false;
  std::string path_;
  FILE* out_ = stderr;
};

// A value for a key=value log field: quoted when it holds a space, '"' or
// '=' (or is empty); control bytes become '?', so one event stays one line.
std::string Kv(std::string_view v);

// A log line as one JSON object: {"time", "level", then each key=value field
// (values Kv-unquoted, as strings), "id" for the first bare MessageId word,
// and the remaining bare words joined as "msg"}. Keys repeated: the first wins.
std::string FormatJson(std::string_view time, std::string_view level, std::string_view line);

}  // namespace holdfast
