// Exporting a Mailbox as a standard Maildir or an mbox file
// (`holdfast export maildir|mbox`; docs/migration.md).
//
// The messages are copied as stored, byte for byte, in UID order, each
// checked against the index's size and SHA-256 on the way (a damaged copy is
// reported, never exported). Every file is created exclusively (it never
// replaces a file already there) and synced before the export reports
// success; the mailbox is only read.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/fs.h"
#include "store/mailbox.h"

namespace holdfast {

struct ExportOptions {
  bool mboxo = false;  // mbox: quote only "From " lines (else mboxrd: ">*From ")
  // Called after each message with (messages done, messages in the mailbox).
  std::function<void(size_t done, size_t total)> progress;
};

struct ExportReport {
  size_t exported = 0;
  size_t vanished = 0;                // deleted from the mailbox while the export ran
  std::vector<std::string> damaged;   // one line each: not exported, run fsck
  size_t newline_added = 0;           // mbox: messages that had no final newline
  std::string Summary() const;        // "exported N, ..."
};

// Writes every message of `box` into the Maildir `dest` (dest/{tmp,new,cur}),
// under its holdfast file name (flags after ":2," included): written in tmp/,
// synced, renamed into new/ or cur/, the directories synced. `dest` must not
// exist or be an empty directory (kExists otherwise).
Status ExportMaildir(Fs& fs, Mailbox& box, const std::string& dest, const ExportOptions& opts,
                     ExportReport* report);

// Writes every message of `box` into a new mbox file `dest` (kExists if it
// exists): per message an envelope line "From SENDER DATE" (SENDER from the
// Return-Path: header, else MAILER-DAEMON; DATE the file's mtime, UTC), the
// message with mboxrd (or mboxo) quoting, a final newline if it had none, and
// an empty separator line. The file is synced, then its directory.
Status ExportMbox(Fs& fs, Mailbox& box, const std::string& dest, const ExportOptions& opts, ExportReport* report);

// Streaming "From " quoting: feed a message in pieces, get the quoted bytes.
class MboxQuoter {
 public:
  explicit MboxQuoter(bool mboxo) : mboxo_(mboxo) {}
  void Feed(std::string_view in, std::string* out);
  // End of the message: what is still held back.
  void Finish(std::string* out);

 private:
  bool mboxo_;
  bool line_start_ = true;
  uint64_t quotes_ = 0;  // '>' seen at the start of this line (counted: there may be many)
  size_t matched_ = 0;   // bytes of "From " matched after them
};

// The envelope sender for a message starting with `head`: the address of its
// first Return-Path: header within the header section, else "MAILER-DAEMON".
std::string EnvelopeSender(std::string_view head);
// "Mon Jan  1 00:00:00 2024" (asctime form, UTC).
std::string EnvelopeDate(int64_t unix_secs);

}  // namespace holdfast
