// EventLog: the durable, append-only record of what happened to each message
// (accepted, filtered, quarantined, delivered, retrieved, deleted, touched by
// recovery), which `holdfast trace` reads back. Finding a lost message must
// not take days of log-surfing across a crash; this answers "where is it?"
// from records written at each state change, not from text logs.
//
// Files: DATA/events/YYYYMMDD-HHMMSS-PID-SEQ.events, CRC-framed records
// (util/record_log.h), one writer process per file, so processes never share
// a file and a file is never reopened for writing. A file holds the events of
// one UTC day at most (a writer starts a new file when the day changes), so
// retention drops whole files by the day in their names. Format and the
// event kinds: docs/events.md.
//
// Durability: each Append is one write(2) at once (a kill -9 loses nothing
// appended); a flusher thread fdatasyncs within sync_interval (a power loss
// may lose that much). An event is written after the state change it
// reports, so the log never claims what did not happen; recovery writes
// events for what it finds (replayed, already_delivered), which covers a
// crash between a change and its event.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "fs/fs.h"
#include "util/status.h"

namespace holdfast {

struct Event {
  Event() = default;
  Event(std::string kind_, std::string id_) : kind(std::move(kind_)), id(std::move(id_)) {}
  Event& Add(std::string key, std::string value) {
    fields.emplace_back(std::move(key), std::move(value));
    return *this;
  }
  // The value of `key`, or nullptr.
  const std::string* Field(std::string_view key) const;

  int64_t time_ms = 0;   // wall clock; Append fills in "now" when 0
  std::string kind;      // "received", "delivered", ... (docs/events.md)
  std::string id;        // the holdfast MessageId, text form; "" if about no one message
  std::vector<std::pair<std::string, std::string>> fields;
};

std::string EncodeEvent(const Event& e);
// False for a payload that is not a well-formed event.
bool DecodeEvent(std::string_view payload, Event* out);

class EventLog {
 public:
  static constexpr const char* kDirName = "events";  // under the data directory
  static constexpr uint8_t kRecordType = 1;

  struct Options {
    std::chrono::milliseconds sync_interval{1000};  // 0: fdatasync inside every Append
    int64_t retention_days = 30;                    // 0: keep forever
    uint64_t max_file_bytes = 64u << 20;            // then a new file
    bool flusher = true;  // false: no thread; Sync() when the owner says (tests)
  };

  // Creates `dir` if needed, prunes expired files, starts the flusher.
  static Result<std::unique_ptr<EventLog>> Open(Fs& fs, std::string dir, Options opts);
  ~EventLog();  // syncs what is written

  // Never fails the caller: mail flows on if the event log cannot be
  // written (counted in errors(), the first failure of a run logged).
  void Append(std::vector<Event> events);
  void Append(Event e);
  // Makes what was appended durable; fails if an append since the last
  // Sync failed (those events are lost).
  Status Sync();
  // Removes files of days older than the retention (at Open and daily).
  void Prune(int64_t now_ms);

  uint64_t appended() const { return appended_.load(); }
  uint64_t errors() const { return errors_.load(); }
  // The status of the first failed write since Open, "" if none.
  std::string first_error();

 private:
  EventLog(Fs& fs, std::string dir, Options opts) : fs_(fs), dir_(std::move(dir)), opts_(opts) {}
  Status Roll(int64_t now_ms);  // mu_ held
  void FlushLoop();

  Fs& fs_;
  const std::string dir_;
  const Options opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<File> file_;
  std::string file_name_;
  int64_t file_day_ = -1;  // days since the epoch (UTC) of the open file
  uint64_t file_bytes_ = 0;
  uint32_t seq_ = 0;
  bool dirty_ = false;
  bool stop_ = false;
  int64_t last_prune_day_ = -1;
  std::string first_error_;
  Status lost_ = Status::Ok();  // an append failed since the last Sync
  std::atomic<uint64_t> appended_{0}, errors_{0};
  std::thread flusher_;
};

// Reading, for `holdfast trace`: the events of every file whose day may hold
// events in [since_ms, until_ms] (0 = unbounded), in time order. Unreadable
// or damaged files add a line to *warnings and give what still checks out.
struct EventFilter {
  int64_t since_ms = 0, until_ms = 0;
  std::function<bool(const Event&)> keep;  // unset: all
};
Result<std::vector<Event>> ReadEvents(Fs& fs, const std::string& dir, const EventFilter& filter,
                                      std::vector<std::string>* warnings);

// The day (days since 1970-01-01 UTC) a file name's events belong to, or -1.
int64_t EventFileDay(std::string_view name);
// "2026-12-06T00:30:12.345Z"
std::string FormatEventTime(int64_t ms);

}  // namespace holdfast
