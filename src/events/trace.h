// Trace: `holdfast trace` -- the life of each message that matches a query,
// read back from the event log (event_log.h, docs/events.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "events/event_log.h"
#include "fs/fs.h"
#include "util/status.h"

namespace holdfast {

// Every criterion given must match. A message matches by its envelope
// events (received, replayed, released): `id` by its MessageId, the rest by
// the envelope; `to` also matches the user a delivery went to. Addresses
// compare case-insensitively, with or without <>. The time window bounds
// when the message arrived; its events are then shown whatever their time.
struct TraceQuery {
  std::string id;
  std::string message_id;  // the Message-ID: header
  std::string from;        // "<>" for the null sender
  std::string to;
  std::string address;  // the sender or a recipient (or the user a delivery went to)
  int64_t since_ms = 0, until_ms = 0;  // 0: unbounded
  bool empty() const { return id.empty() && message_id.empty() && from.empty() && to.empty() && address.empty(); }
};

struct MessageTrace {
  std::string id;
  std::vector<Event> events;  // in time order
};

// Messages in the order they arrived.
Result<std::vector<MessageTrace>> RunTrace(Fs& fs, const std::string& events_dir, const TraceQuery& query,
                                           std::vector<std::string>* warnings);

// Human-readable: a heading line per message, then one line per event.
std::string FormatTraceText(const std::vector<MessageTrace>& traces);
// JSON Lines: one object per message, {"id", "events": [{"time", "time_ms", "event", FIELD...}]}.
std::string FormatTraceJson(const std::vector<MessageTrace>& traces);

// A point in time for --since/--until: "2026-12-06", "2026-12-06T08:30:00Z"
// (UTC; seconds and the Z optional), or an age before `now_ms`: "90s", "30m",
// "12h", "7d". nullopt if it is none of these.
std::optional<int64_t> ParseTraceTime(std::string_view text, int64_t now_ms);

}  // namespace holdfast
