// Mailbox: one user's Maildir and its index -- the store every other layer
// (deliver, LMTP, POP3, fsck) goes through. Layout, formats and the crash
// reasoning: docs/storage.md.
//
// Promises (MISSION.md):
//  - A Delivery is durable before Commit() returns, and whole or invisible
//    at every instant: written in tmp/, fdatasync'ed, renamed into new/,
//    new/ fsync'ed (else a power loss can undo the rename) -- or cur/ with
//    flags, for an import.
//  - UIDs only grow and are never reused; listings come from the index, kept
//    in step with other Maildir tools' renames without losing a message to a
//    readdir race (a rename by another tool can hide a file from one pass).
//  - Expunge is identity-checked and two durable states, requested then
//    gone; repeating it is harmless, and a reused name is never deleted.
//  - Open() finishes or rolls back whatever a crash interrupted before
//    anything else runs (a crash must never leave mail that later vanishes).
// All methods take the mailbox lock (flock on holdfast.lock) as needed; one
// Mailbox object is not thread-safe, several processes may share a Maildir.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/message_id.h"
#include "fs/fs.h"
#include "store/index_checkpoint.h"
#include "store/mailbox_index.h"
#include "util/checksum.h"

namespace holdfast {

struct MailboxOptions {
  std::string hostname = "localhost";
  std::chrono::milliseconds lock_timeout{30000};
  // A full listing of at least this many messages leaves an index
  // checkpoint for the next process's OpenForListing (docs/storage.md).
  size_t checkpoint_min_messages = 1000;
};

struct DeliveredMessage {
  uint32_t uid = 0;
  MessageId id;
  std::string name;  // file name in new/
  uint64_t size = 0;
};

class Mailbox;

// A message being written into tmp/. Dropping it uncommitted removes the
// file; a crash leaves it to the next Open() to remove.
class Delivery {
 public:
  ~Delivery();
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;

  Status Write(std::string_view chunk);
  // Where the commit puts the message: new/ (the default, no flags) or cur/
  // with Maildir flags (":2,FLAGS"; only A-Z are kept, sorted, once each) --
  // for an import that keeps the source's seen/replied/... state.
  void SetPlacement(MaildirDir dir, std::string_view flags);
  // Durable and visible when this returns ok; the Delivery is done either way.
  Result<DeliveredMessage> Commit();
  const MessageId& id() const { return id_; }
  uint64_t size() const { return size_; }

 private:
  friend class Mailbox;
  Delivery(Mailbox* box, MessageId id, std::string tmp_name, std::unique_ptr<File> file);
  void Abort();

  Mailbox* box_;
  MessageId id_;
  std::string tmp_name_;
  std::unique_ptr<File> file_;
  uint64_t size_ = 0;
  MaildirDir dir_ = MaildirDir::kNew;
  std::string flags_;
  uint64_t bare_lf_ = 0;
  bool last_was_cr_ = false;
  char last_char_ = '\n';
  Sha256 sha_;
  bool done_ = false;
};

// One message of a listing without its file name: what a POP3 snapshot of
// a big mailbox needs (a name is a heap string per message), with the path
// looked up by uid when a message is opened (Mailbox::PathOf).
struct MessageRef {
  uint32_t uid = 0;
  MessageId id;
  uint64_t network_size = 0;  // IndexEntry::network_size()
};

struct ExpungeTarget {
  uint32_t uid;
  MessageId id;  // must match the message that has this uid
};

struct FsckReport {
  size_t messages_checked = 0;
  std::vector<std::string> problems;  // one line each, human readable
  std::vector<std::string> repairs;   // what recovery or --repair did
  size_t damaged_remaining = 0;       // checksum/size mismatches not set aside
  bool clean() const { return problems.empty(); }
};

class Mailbox {
 public:
  static constexpr const char* kIndexFile = "holdfast.index";
  static constexpr const char* kLockFile = "holdfast.lock";
  static constexpr const char* kDamagedDir = "holdfast-damaged";

  // A hint that lets a delivery skip reading the whole journal
  // (docs/storage.md, "The index summary"); never needed for correctness.
  static constexpr const char* kSummaryFile = "holdfast.index.summary";
  // A hint that lets a fresh process list without replaying the journal or
  // scanning an unchanged directory (docs/storage.md, "The index checkpoint").
  static constexpr const char* kCheckpointFile = "holdfast.index.checkpoint";

  // Makes `dir` a Maildir (dir, tmp/, new/, cur/) if it is not one yet, durably.
  static Status Create(Fs& fs, const std::string& dir);
  // Opens an existing Maildir and runs recovery.
  static Result<std::unique_ptr<Mailbox>> Open(Fs& fs, const std::string& dir, MailboxOptions opts);
  // Opens it for BeginDelivery/CommitAll only (`holdfast deliver`): with a
  // valid summary, only the journal's records after it are read, so the
  // cost does not grow with the mailbox. Recovery of tmp/ runs; pending
  // expunges are left to the next full Open. Any other method first loads
  // the whole journal, as Open would have; Knows() and PathOf() need Open.
  static Result<std::unique_ptr<Mailbox>> OpenForDelivery(Fs& fs, const std::string& dir, MailboxOptions opts);
  // Whether this object reads only the journal's tail (a test hook).
  bool reads_tail_only() const { return tail_only_; }
  // Opens it for ListRefs/PathOf (a POP3 maildrop): with a valid checkpoint,
  // only the journal's records after it are read, and a listing reads new/
  // or cur/ only if its stamp moved -- and leaves this mode for the whole
  // load and scan if anything there is not what the checkpoint and those
  // records say. Recovery runs as in Open. Any other method first loads the
  // whole journal; Knows() needs Open.
  static Result<std::unique_ptr<Mailbox>> OpenForListing(Fs& fs, const std::string& dir, MailboxOptions opts);
  // Whether this object still lists from a checkpoint (a test hook).
  bool reads_checkpoint() const { return view_ != nullptr; }

  // `id` is given when the message already has one (from the spool), so a
  // replay can recognise it; otherwise a new one is generated.
  Result<std::unique_ptr<Delivery>> BeginDelivery(std::optional<MessageId> id = std::nullopt);
  // Commits several deliveries into this mailbox with shared syncs: every
  // file's data (concurrently), one index sync for all their Add records,
  // the renames, one sync of new/ (and of cur/ if a placement asked for it)
  // — K+2 syncs for K messages instead of 3K.
  // One result per delivery, each as Delivery::Commit() would give it; a
  // delivery whose result is not ok is left to its owner to drop.
  std::vector<Result<DeliveredMessage>> CommitAll(const std::vector<Delivery*>& ds);
  // Catches up with the journal (and the directory, unless told not to: only
  // needed once per process, to adopt files whose Add record was lost), so
  // that Knows() answers from current state.
  Status Refresh(bool scan_directory = true);
  // Whether a message with `id` is in this mailbox or was deleted from it.
  bool Knows(const MessageId& id) const { return state_.Knows(id); }
  // Every message, by UID, after catching up with the directory.
  Result<std::vector<IndexEntry>> List();
  // The same listing, without names.
  Result<std::vector<MessageRef>> ListRefs();
  // Where message `uid` is now, as this object last saw the index (Refresh()
  // catches up); kNotFound if it left the listing or `uid` names another id.
  Result<std::string> PathOf(uint32_t uid, const MessageId& id) const;
  // All-or-nothing identity check first; then requested (durable), files
  // removed (durable), gone (durable). Unknown or already-gone UIDs are skipped.
  // `committed`, if set, is told which messages once the request is durable:
  // from then on they are gone, whatever happens (recovery finishes it).
  Status Expunge(const std::vector<ExpungeTarget>& targets,
                 const std::function<void(const std::vector<MessageId>&)>& committed = {});
  // Verifies every message against its size and checksum; with `repair`,
  // moves damaged ones into holdfast-damaged/ (never deletes).
  Result<FsckReport> Fsck(bool repair, const std::function<void(size_t, size_t)>& progress = {});
  // Throws the index away and rebuilds it from the files (keeping UIDs).
  Status Rebuild();

  // About what this object holds in memory, for caches that must stay
  // within a budget: a fixed part (buffers, the journal's descriptor) and a
  // part per indexed message (docs/configuration.md, [cache]).
  size_t MemoryEstimate() const;
  static constexpr size_t kFixedBytes = 16 << 10;
  static constexpr size_t kBytesPerMessage = 1200;

  uint32_t uidvalidity() const { return view_ ? view_->head().uidvalidity : state_.uidvalidity(); }
  const std::string& dir() const { return dir_; }
  // What the last recovery did, one line each (for logs and fsck).
  const std::vector<std::string>& recovery_log() const { return recovery_log_; }
  // The messages whose requested expunge the last recovery finished.
  const std::vector<MessageId>& recovery_expunged() const { return recovery_expunged_; }

 private:
  friend class Delivery;
  Mailbox(Fs& fs, std::string dir, MailboxOptions opts);

  using Lock = std::unique_ptr<FileLock>;
  static Status CheckMaildir(Fs& fs, const std::string& dir);
  Result<Lock> LockAndLoad();
  Status LoadJournal();
  // Tail-only mode: the records after the summary's offset, for the next UID.
  Status LoadJournalTail();
  // Leaves tail-only mode: the next LockAndLoad reads the whole journal.
  void LoadWholeJournalNextTime();
  // Adopts the summary if it matches the journal; false if it does not.
  bool AdoptSummary();
  // Best effort, after the journal was synced: a lost or stale summary only
  // costs the next delivery a whole read.
  void WriteSummary();
  // The summary's and the checkpoint's way to disk: .new, then rename; no fsync.
  Status WriteHintFile(const char* name, std::string_view bytes);
  uint32_t NextUid() const {
    return tail_only_ ? tail_uid_next_ : view_ ? view_uid_next_ : state_.uid_next();
  }
  // Opens the journal if it has this inode, is at least `offset` long and
  // its first frame has CRC `head_crc` (what a summary or checkpoint names).
  Result<std::unique_ptr<File>> OpenJournalMatching(uint64_t inode, uint64_t offset, uint32_t head_crc);
  // The CRC of the open journal's first frame (its Header).
  Result<uint32_t> HeadCrc();
  // Listing mode: adopts the checkpoint if it matches the journal and this boot.
  bool AdoptCheckpoint();
  // Listing mode: the records after the checkpoint (Add, Confirm, UidNext);
  // anything else leaves the mode and loads the whole journal.
  Status LoadViewTail();
  // Listing mode: the listing, if the directories agree with the view;
  // false (and out of the mode) if they do not.
  Result<bool> ListFromView(std::vector<MessageRef>* out);
  Result<DirStamps> StampDirs();
  // After a full listing: a new checkpoint when the one this process knows
  // of is for another journal, other directory stamps, or far behind.
  void MaybeWriteCheckpoint();
  // Cuts a torn journal tail at journal_offset_ (never acknowledged).
  Status CutTornTail(uint64_t torn_bytes);
  Status RebuildFrom(MailboxIndex salvaged, const std::string& why);
  Status WriteNewJournal(const MailboxIndex& state);
  Status Log(const std::vector<IndexRecord>& records, bool sync);
  // fdatasync of the journal, unless this process did so since it last read
  // or wrote anything in it.
  Status SyncJournal();
  // (new/ mtime, cur/ mtime), or none.
  using DirStamp = std::optional<std::pair<int64_t, int64_t>>;
  // `quiet_at`, if given, gets the directories' mtimes when the first pass
  // was a consistent snapshot of them.
  Status SyncWithDirectory(MailboxIndex& state, std::vector<IndexRecord>* changes, DirStamp* quiet_at);
  // Every live entry seen on disk by a scan (or being expunged).
  bool AllConfirmed() const;
  Status CatchUpWithDirectory(std::vector<IndexRecord>* changes);
  // List()'s work before the copy: lock, journal, directory, compaction.
  Status CatchUpForListing();
  Status RecoverTmp();
  Status RemoveFiles(const std::vector<uint32_t>& uids);
  Status FinishRequestedExpunges();
  std::string Path(std::string_view rel) const { return JoinPath(dir_, rel); }

  Fs& fs_;
  std::string dir_;
  MailboxOptions opts_;
  MailboxIndex state_;
  std::unique_ptr<File> journal_;
  uint64_t journal_inode_ = 0;
  uint64_t journal_offset_ = 0;  // bytes of the journal applied to state_
  DirStamp scanned_at_;  // the directories' mtimes when a scan last matched state_ completely
  uint64_t synced_inode_ = 0;    // the journal (inode) this process last fdatasync'ed,
  uint64_t synced_offset_ = 0;   // and up to where
  uint32_t uid_floor_ = 0;       // highest uid this process handed out
  bool tail_only_ = false;       // state_ is empty; tail_uid_next_ is what counts
  uint32_t tail_uid_next_ = 0;
  uint64_t head_crc_inode_ = 0;  // the journal whose first frame head_crc_ is
  uint32_t head_crc_ = 0;
  // Listing mode (OpenForListing): state_ is empty; the checkpoint, the Adds
  // after it in the journal and the next UID are what counts.
  std::unique_ptr<IndexCheckpoint> view_;
  std::vector<IndexEntry> view_added_;
  uint32_t view_uid_next_ = 0;
  std::optional<CheckpointHead> checkpoint_known_;  // the one this process last wrote or adopted
  std::vector<std::string> recovery_log_;
  std::vector<MessageId> recovery_expunged_;
};

}  // namespace holdfast
