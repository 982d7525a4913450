// SpoolLog: the durable intake between LMTP and the mailboxes (issue 3,
// seed 001). An acknowledged message lives here until every recipient's
// copy is durable in its mailbox. Format: docs/spool.md.
//
// DATA/spool/<16 hex digits>.seg are segments of CRC-framed records
// (util/record_log.h): Message records (envelope + body) and Done records
// (one recipient finished). Segments are only appended to; a new one starts
// when the current one passes Options::segment_bytes; a segment is removed
// once it and every older segment hold only retired messages.
//
// Not thread-safe: one owner (the group-commit thread in spool.h) calls it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/message_id.h"
#include "fs/fs.h"
#include "util/status.h"

namespace holdfast {

struct SpoolRecipient {
  std::string address;  // as the client gave it
  std::string user;     // the mailbox it maps to
  std::string detail;   // the +tag, may be empty
};

struct SpoolMessage {
  MessageId id;
  int64_t received_ms = 0;
  std::string client;     // peer address, or "local"
  std::string helo;
  std::string mail_from;  // "" for the null sender
  std::vector<SpoolRecipient> rcpts;
  std::string body;       // exactly as received (after dot-unstuffing)
};

enum class RcptState : uint8_t {
  kPending = 0,
  kDelivered = 1,      // a copy is durable in the mailbox
  kAlreadyThere = 2,   // replay found it delivered (or delivered and deleted) before
};
const char* RcptStateName(RcptState s);

// What the spool knows about one unretired message.
struct SpoolEntry {
  SpoolMessage msg;
  std::vector<RcptState> state;  // one per msg.rcpts
  uint64_t segment = 0;
  bool Retired() const;
};

class SpoolLog {
 public:
  struct Options {
    uint64_t segment_bytes = 64ull << 20;
  };
  static constexpr uint32_t kVersion = 1;

  // Opens (creating DATA/spool if needed) and replays every segment: torn
  // tails are cut, a damaged segment is an error (kCorrupt) -- never skipped
  // silently. `unretired` receives what still has recipients pending.
  static Result<std::unique_ptr<SpoolLog>> Open(Fs& fs, const std::string& dir, Options opts,
                                                 std::vector<SpoolEntry>* unretired);
  // Reads the spool without changing anything (holdfast queue list).
  static Result<std::vector<SpoolEntry>> Inspect(Fs& fs, const std::string& dir);

  // Appends, not yet durable: Sync() makes everything appended so far durable.
  Status AppendMessage(const SpoolMessage& msg);
  Status AppendDone(const MessageId& id, uint32_t rcpt, RcptState state);
  Status Sync();
  // Removes the oldest segments whose messages are all retired (durably).
  Status RemoveRetiredSegments();

  size_t unretired() const;
  uint64_t active_segment() const { return active_seq_; }

 private:
  SpoolLog(Fs& fs, std::string dir, Options opts) : fs_(fs), dir_(std::move(dir)), opts_(opts) {}
  Status Replay(std::vector<SpoolEntry>* unretired);
  Status StartSegment(uint64_t seq);
  Status Append(const std::string& frame);
  std::string SegmentPath(uint64_t seq) const;

  Fs& fs_;
  std::string dir_;
  Options opts_;
  std::unique_ptr<File> active_;
  uint64_t active_seq_ = 0;
  uint64_t active_size_ = 0;
  bool dir_dirty_ = false;          // a new segment's name is not durable yet
  std::vector<uint64_t> segments_;  // oldest first, the active one last
  // Per message: its segment and how many recipients are still pending.
  struct Tracked {
    uint64_t segment;
    uint32_t pending;
    std::vector<RcptState> state;
  };
  std::map<MessageId, Tracked> tracked_;
  std::map<uint64_t, uint32_t> live_per_segment_;  // unretired messages per segment
};

// Parses a segment's bytes (exposed for the fuzz harness and queue tools).
struct SegmentContents {
  std::vector<SpoolMessage> messages;
  struct Done {
    MessageId id;
    uint32_t rcpt;
    RcptState state;
  };
  std::vector<Done> done;
  uint64_t valid_end = 0;
  bool torn = false;
};
Result<SegmentContents> ParseSegment(std::string_view bytes);

}  // namespace holdfast
