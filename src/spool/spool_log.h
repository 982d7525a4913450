// SpoolLog: the durable intake between LMTP and the mailboxes. An
// acknowledged message lives here until every recipient's copy is durable in
// its mailbox, so a crash after the 250 loses nothing. Format: docs/spool.md.
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
  // Released from quarantine: skips the filters, and delivery checks each
  // mailbox for the MessageId first (a release may be replayed).
  bool released = false;
};

enum class RcptState : uint8_t {
  kPending = 0,
  kDelivered = 1,      // a copy is durable in the mailbox
  kAlreadyThere = 2,   // replay found it delivered (or delivered and deleted) before
  kQuarantined = 3,    // the filter stage set it aside (DATA/quarantine)
  kDiscarded = 4,      // a filter asked for it to be dropped (logged)
};
const char* RcptStateName(RcptState s);

// The filter stage's ledger, from Attempt and Outcome records.
enum class FilterOutcome : uint8_t {
  kPassed = 1,    // the chain decided (deliver, quarantine, discard)
  kTempFail = 2,  // not the message's fault; does not count
  kFailed = 3,    // failed on this message alone: counts towards K
};
struct FilterLedger {
  uint32_t failures = 0;             // solo failures so far
  std::vector<std::string> history;  // their reasons, oldest first
  // An Attempt with no Outcome since: the daemon died while it was in a
  // worker. `in_flight_batch` messages shared that attempt, `in_flight_group`
  // tells which ones (the same number for the same attempt).
  uint32_t in_flight_batch = 0;
  uint64_t in_flight_group = 0;
};

// What the spool knows about one unretired message.
struct SpoolEntry {
  SpoolMessage msg;
  std::vector<RcptState> state;  // one per msg.rcpts
  uint64_t segment = 0;
  FilterLedger ledger;
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
  // The same for many, with one write: an entry that fails its checks
  // fails alone (AppendDones: then kInvalid, the others recorded); a failed
  // write fails every one (nothing of it is kept).
  std::vector<Status> AppendMessages(const std::vector<const SpoolMessage*>& msgs);
  struct DoneMark {
    MessageId id;
    uint32_t rcpt;
    RcptState state;
  };
  Status AppendDones(const std::vector<DoneMark>& marks);
  // The filter ledger: `ids` go to one worker together; then one outcome
  // each. Ids no longer spooled are left out.
  Status AppendAttempt(const std::vector<MessageId>& ids);
  Status AppendOutcome(const MessageId& id, FilterOutcome outcome, std::string_view reason);
  bool Tracks(const MessageId& id) const { return tracked_.count(id) != 0; }
  // Tracks a copy released from quarantine (SpoolMessage::released).
  bool TracksReleased(const MessageId& id) const {
    auto it = tracked_.find(id);
    return it != tracked_.end() && it->second.released;
  }
  Status Sync();
  // For a sync running beside the appends (Spool's commit pipeline): the
  // segment appends go to now, and whether the spool directory needs a sync
  // (the flag is cleared). Syncing both makes durable everything appended
  // before this call; a later rotation syncs the old segment itself.
  std::shared_ptr<File> active_file() const { return active_; }
  bool TakeDirDirty() {
    bool d = dir_dirty_;
    dir_dirty_ = false;
    return d;
  }
  const std::string& dir() const { return dir_; }
  // Removes the oldest segments whose messages are all retired (durably),
  // at most `at_most` of them.
  Status RemoveRetiredSegments(size_t at_most = SIZE_MAX);
  // How many of the oldest segments RemoveRetiredSegments would remove now.
  size_t RetiredSegments() const;

  size_t unretired() const;
  uint64_t active_segment() const { return active_seq_; }

 private:
  SpoolLog(Fs& fs, std::string dir, Options opts) : fs_(fs), dir_(std::move(dir)), opts_(opts) {}
  Status Replay(std::vector<SpoolEntry>* unretired);
  Status StartSegment(uint64_t seq);
  Status Append(const std::string& frame);
  Status CheckMessage(const SpoolMessage& msg) const;
  // One write holds at most this much (and one message, whatever its size).
  static constexpr size_t kMaxWriteBytes = 4u << 20;
  std::string SegmentPath(uint64_t seq) const;

  Fs& fs_;
  std::string dir_;
  Options opts_;
  std::shared_ptr<File> active_;
  uint64_t active_seq_ = 0;
  uint64_t active_size_ = 0;
  bool dir_dirty_ = false;          // a new segment's name is not durable yet
  std::vector<uint64_t> segments_;  // oldest first, the active one last
  // Per message: its segment and how many recipients are still pending.
  struct Tracked {
    uint64_t segment;
    uint32_t pending;
    std::vector<RcptState> state;
    bool released = false;
  };
  std::map<MessageId, Tracked> tracked_;
  std::map<uint64_t, uint32_t> live_per_segment_;  // unretired messages per segment
  // AppendMessages' frames, kept between calls: a fresh buffer of a round's
  // size every round costs more in page faults than the copy itself.
  std::string frames_;
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
  // Attempt (outcome 0, `ids` of the batch) and Outcome (one id) records, in order.
  struct FilterEvent {
    uint8_t outcome = 0;
    std::vector<MessageId> ids;
    std::string reason;
  };
  std::vector<FilterEvent> filter_events;
  // Every record above in file order: (which vector, index in it).
  enum RecordKind : uint8_t { kMessageRecord, kDoneRecord, kFilterRecord };
  std::vector<std::pair<RecordKind, size_t>> order;
  uint64_t valid_end = 0;
  bool torn = false;
};
Result<SegmentContents> ParseSegment(std::string_view bytes);

// A Message record's frame and payload: the quarantine keeps messages in
// the same encoding (docs/filters.md).
std::string EncodeMessageRecord(const SpoolMessage& m);
void AppendMessageRecord(std::string* out, const SpoolMessage& m);
Result<SpoolMessage> DecodeMessagePayload(std::string_view payload);

}  // namespace holdfast
