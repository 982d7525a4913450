// The index checkpoint, holdfast.index.checkpoint (docs/storage.md, "The
// index checkpoint"): what a POP3 listing needs of every live message -- uid,
// MessageId, network size, directory, file name -- as of one offset of one
// journal, with the new/ and cur/ stamps of the quiet scan that matched it.
// A fresh process reads its fixed-size part in one read instead of
// replaying the journal into a MailboxIndex (100,000 messages: ~4 MB against
// ~150 MB of maps), and reads a file name only when a message is opened.
//
// A hint, like the summary: the caller checks it against the journal and the
// directories, and anything that does not match sends it to the whole load.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/message_id.h"
#include "fs/fs.h"
#include "store/mailbox_index.h"
#include "util/status.h"

namespace holdfast {

// new/ and cur/ as a quiet scan saw them, and the boot it happened in.
struct DirStamps {
  uint64_t new_inode = 0;
  int64_t new_mtime_ns = 0;
  uint64_t cur_inode = 0;
  int64_t cur_mtime_ns = 0;
  std::string boot_id;
  bool operator==(const DirStamps&) const = default;
};

struct CheckpointHead {
  uint64_t journal_inode = 0;
  uint64_t journal_offset = 0;  // the journal's records up to here are in it
  uint32_t head_crc = 0;        // CRC32C of the journal's first frame (its Header)
  uint32_t uidvalidity = 0;
  uint32_t uid_next = 0;
  DirStamps stamps;
};

// The checkpoint's bytes for `live` (every entry confirmed, none being
// expunged: the caller makes sure).
std::string EncodeCheckpoint(const CheckpointHead& head, const std::map<uint32_t, IndexEntry>& live);

// One message of a loaded checkpoint, without its name.
struct CheckpointEntry {
  uint32_t uid = 0;
  MessageId id;
  MaildirDir dir = MaildirDir::kNew;
  uint64_t network_size = 0;
};

class IndexCheckpoint {
 public:
  // Reads the head and the entries (one read each) and checks their CRCs;
  // kCorrupt for anything that does not check out, kNotFound if absent.
  // The file stays open: names are read from it later (it is never changed
  // in place, only replaced by a rename).
  static Result<std::unique_ptr<IndexCheckpoint>> Load(Fs& fs, const std::string& path);

  const CheckpointHead& head() const { return head_; }
  size_t size() const { return count_; }
  CheckpointEntry At(size_t i) const;
  // The position of `uid`, by binary search (entries are in uid order).
  std::optional<size_t> Find(uint32_t uid) const;
  // Entry i's file name, read from the file and checked against its CRC.
  Result<std::string> Name(size_t i) const;
  // Memory held (the entries' bytes).
  size_t bytes() const { return entries_.size(); }

 private:
  IndexCheckpoint() = default;
  uint32_t UidAt(size_t i) const;

  std::unique_ptr<File> file_;
  CheckpointHead head_;
  size_t count_ = 0;
  uint64_t names_at_ = 0;  // file offset of the names
  uint64_t names_bytes_ = 0;
  std::string entries_;    // count_ fixed-size records
};

}  // namespace holdfast
