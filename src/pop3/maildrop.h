// pop3::Maildrop: one POP3 session's hold on a user's mailbox (RFC 1939
// "maildrop"), from login to QUIT.
//
// Open() takes the user's POP3 lock (a flock that dies with its holder, so no
// stale lock ever locks a user out) and snapshots the mailbox from
// its index. The session reads messages through it and never moves, copies
// or rewrites anything; only Commit() changes the mailbox, through the
// store's identity-checked, two-phase expunge (docs/storage.md), so a crash
// at any point leaves a subset of the requested deletions done and recovery
// finishes the rest. Mail that arrives meanwhile is not in the snapshot and
// is not touched. Blocking file I/O: the server runs these off its event loop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "pop3/pop3_session.h"
#include "store/mailbox.h"
#include "util/status.h"

namespace holdfast::pop3 {

class Maildrop {
 public:
  // The lock file, beside the Maildir's own holdfast.lock (which guards
  // index updates for a moment; this one is held for a whole session).
  static constexpr const char* kLockFile = "holdfast-pop3.lock";

  // kBusy when another session holds the user's maildrop ([IN-USE]). The
  // Maildir is created if the user has none yet (an empty maildrop).
  // `reuse`, if given, is this Maildir's Mailbox from an earlier session: it
  // only reads what the index gained since, instead of all of it.
  static Result<std::unique_ptr<Maildrop>> Open(Fs& fs, const std::string& maildir, MailboxOptions opts,
                                                std::unique_ptr<Mailbox> reuse = nullptr);
  // Ends the session (drops the lock) and hands the Mailbox back for reuse.
  static std::unique_ptr<Mailbox> Close(std::unique_ptr<Maildrop> drop);

  // The snapshot for Session::CompleteAuth: size as RETR sends it, the
  // MessageId as UIDL (stable across sessions, restarts, index rebuilds and
  // new/ -> cur/ renames: it is derived from the file's base name).
  std::vector<MessageInfo> Listing() const;
  size_t count() const { return entries_.size(); }
  // The MessageId of message `n` (1-based, n <= count()).
  const MessageId& IdOf(size_t n) const { return entries_[n - 1].id; }

  // The open file of message `n` (1-based), found again by UID if another
  // Maildir tool renamed it since the snapshot. kNotFound if it is gone.
  Result<std::unique_ptr<File>> OpenMessage(size_t n);

  // The UPDATE state: removes messages `numbers` (1-based) durably; ok only
  // once every one of them is gone for good.
  // `committed` as for Mailbox::Expunge: told once the deletions are certain.
  Status Commit(const std::vector<size_t>& numbers,
                const std::function<void(const std::vector<MessageId>&)>& committed = {});

 private:
  Maildrop(Fs& fs, std::unique_ptr<FileLock> lock, std::unique_ptr<Mailbox> box, std::vector<MessageRef> entries)
      : fs_(fs), lock_(std::move(lock)), box_(std::move(box)), entries_(std::move(entries)) {}

  Fs& fs_;
  std::unique_ptr<FileLock> lock_;
  std::unique_ptr<Mailbox> box_;
  // Message n is entries_[n-1], by UID. No file names: a 100,000-message
  // snapshot would copy 100,000 strings at every login; OpenMessage asks
  // box_ (which only this session uses) where the message is.
  std::vector<MessageRef> entries_;
};

}  // namespace holdfast::pop3
