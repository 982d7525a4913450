// Importing a Maildir (Dovecot, Courier, another holdfast) into a Mailbox,
// resumably and exactly once, keeping each message's flags
// (`holdfast import maildir`; docs/migration.md).
//
// A Maildir file's base name (the part before ':') is unique and never
// changed by Maildir tools, so each source message gets a MessageId derived
// from it (MaildirImportId): a re-run after a crash, kill or error recognises
// what is already there with Mailbox::Knows() -- also messages deleted since.
// A message in the source's cur/ goes into cur/ with its ":2," flags (A-Z),
// one in new/ into new/. Files are streamed through in chunks (no message is
// held whole); deliveries are batched with Mailbox::CommitAll. The source is
// only read.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/message_id.h"
#include "fs/fs.h"
#include "migrate/import_report.h"
#include "store/mailbox.h"

namespace holdfast {

struct MaildirImportOptions {
  uint64_t max_message_size = 50ull << 20;  // larger files are skipped and reported
  size_t batch = 64;                        // deliveries committed together (shared syncs)
  // Called after each message with (messages looked at, messages in the source).
  std::function<void(size_t done, size_t total)> progress;
};

struct MaildirImportReport : ImportReport {
  std::vector<std::string> subfolders;  // Maildir++ ".NAME" folders found, not imported
};

// Imports every message file of `source`/new and `source`/cur (tmp/ is
// ignored: its files were never delivered) into `box`, in name order. Takes
// MAILDIR/holdfast-import.lock for the whole run (kBusy if another import
// into this mailbox is running). A non-ok Status stops the import: what
// `report` counts is durable, the rest is not there (a re-run continues).
// kInvalid: `source` is not a Maildir.
Status ImportMaildir(Fs& fs, const std::string& source, Mailbox& box, const MaildirImportOptions& opts,
                     MaildirImportReport* report);

// The id of the source message with Maildir base name `base`. A holdfast
// name keeps the id it carries (an export imported back into the mailbox it
// came from is recognised). Otherwise: the first 128 bits of
// SHA-256("holdfast-maildir-import:" base) with the 48-bit time field all
// ones, so the tombstones of deleted imports are kept for good, as for mbox.
MessageId MaildirImportId(const std::string& base);

}  // namespace holdfast
