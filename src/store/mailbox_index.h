// The mailbox index: what holdfast knows about one Maildir, rebuilt in
// memory from the records of its journal file `holdfast.index`
// (docs/storage.md, "Mailbox index"). It assigns UIDs, which only grow and
// are never reused, and remembers each message's identity, size and
// checksum. Listings come from here, never from one bare readdir (a rename
// by another tool can hide a file from one pass).
//
// This file knows the records and how they change the state; mailbox.h
// decides when to write them.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/message_id.h"
#include "util/status.h"

namespace holdfast {

enum class MaildirDir : uint8_t { kNew = 0, kCur = 1 };
const char* SubdirName(MaildirDir d);

// IndexEntry::eol_added for a message of `size` bytes whose last byte is `last`.
inline uint8_t EolAdded(uint64_t size, char last) {
  if (size == 0 || last == '\n') return 0;
  return last == '\r' ? 1 : 2;
}

// Why a message left the listing.
enum class GoneReason : uint8_t {
  kExpunged = 0,    // holdfast's own identity-checked expunge finished
  kVanished = 1,    // another tool removed the file
  kDamaged = 2,     // fsck --repair moved it aside
};

struct IndexEntry {
  uint32_t uid = 0;
  MessageId id;
  MaildirDir dir = MaildirDir::kNew;
  std::string name;                // current file name within dir
  uint64_t size = 0;               // bytes on disk
  uint64_t vsize = 0;              // size with every bare LF as CRLF (Maildir W=)
  // What a network form adds to end an unterminated last line: 0 (the file
  // is empty or ends in LF), 1 (it ends in CR: an LF), 2 (otherwise: CRLF).
  uint8_t eol_added = 0;
  std::array<uint8_t, 32> sha256{};
  bool expunge_requested = false;  // durable intent; recovery finishes it
  // A directory scan has seen the file. A delivery's Add is written before
  // its rename, so until then the copy may never have reached new/.
  bool confirmed = false;
  std::string Path(const std::string& maildir) const;
  std::string Base() const;        // name up to ':'
  std::string Flags() const;       // letters after ":2,"
  // The RFC 1939 size (POP3 LIST, STAT, RETR): the octets sent with CRLF
  // line ends, before dot-stuffing, without the terminator.
  uint64_t network_size() const { return vsize + eol_added; }
};

enum class RecordType : uint8_t {
  kHeader = 1,          // version u32, uidvalidity u32, created_ms u64
  kAdd = 2,             // uid, id, dir, name, size, vsize, sha256 [, eol_added if not 0]
  kMove = 3,            // uid, dir, name (renamed by a Maildir tool)
  kExpungeRequest = 4,  // uid, id
  kGone = 5,            // uid, id, reason
  kUidNext = 6,         // next uid (written by compaction and rebuild)
  kTombstone = 7,       // id of a message that was here once (compaction keeps them)
  kConfirm = 8,         // uid: a scan saw its file on disk
};

struct IndexRecord {
  RecordType type = RecordType::kHeader;
  uint32_t uid = 0;
  uint32_t uidvalidity = 0;
  uint64_t created_ms = 0;
  IndexEntry entry;  // kAdd (all fields), kMove (dir, name)
  MessageId id;      // kExpungeRequest, kGone, kTombstone
  GoneReason reason = GoneReason::kExpunged;

  std::string Encode() const;  // one framed record, ready to append
  static Result<IndexRecord> Decode(uint8_t type, std::string_view payload);
};

class MailboxIndex {
 public:
  static constexpr uint32_t kVersion = 1;

  // Applies one record. Records that contradict the state (a uid used twice,
  // a move of an unknown uid) are refused with kCorrupt.
  Status Apply(const IndexRecord& r);

  bool has_header() const { return uidvalidity_ != 0; }
  uint32_t uidvalidity() const { return uidvalidity_; }
  uint32_t uid_next() const { return uid_next_; }
  const std::map<uint32_t, IndexEntry>& live() const { return live_; }
  // Whether every live entry was seen on disk by a scan or is being
  // expunged (no Add whose rename may not have happened). O(1): counted.
  bool AllConfirmed() const { return pending_ == 0; }
  const IndexEntry* FindUid(uint32_t uid) const;
  const IndexEntry* FindBase(const std::string& base) const;
  // Base names of messages that left the listing, and why (resurrection rules).
  std::optional<std::pair<uint32_t, GoneReason>> GoneBase(const std::string& base) const;
  // Whether `uid` belongs, or belonged, to some message this index knows.
  bool UidTaken(uint32_t uid) const { return live_.count(uid) != 0 || retired_uids_.count(uid) != 0; }
  // Whether a copy of this message was durably here -- seen on disk, or
  // expunged by holdfast -- and so must not be delivered again by a replay,
  // even if the user has deleted it since (within the tombstone window).
  bool Knows(const MessageId& id) const;

  // The records that recreate this state in a fresh journal (compaction).
  // Tombstones of ids younger than kTombstoneWindowMs (by the clock in the
  // id) are kept; older ones cannot still be waiting in a spool.
  std::vector<IndexRecord> Snapshot(uint64_t created_ms) const;
  static constexpr uint64_t kTombstoneWindowMs = 30ull * 24 * 3600 * 1000;

 private:
  uint32_t uidvalidity_ = 0;
  uint32_t uid_next_ = 1;
  std::map<uint32_t, IndexEntry> live_;
  std::unordered_map<std::string, uint32_t> base_to_uid_;
  std::unordered_map<std::string, std::pair<uint32_t, GoneReason>> gone_;
  std::map<MessageId, uint32_t> live_ids_;
  std::map<MessageId, uint32_t> tombstones_;  // id -> uid it had (0 if unknown)
  std::set<uint32_t> retired_uids_;
  size_t pending_ = 0;  // live entries neither confirmed nor being expunged
};

}  // namespace holdfast
