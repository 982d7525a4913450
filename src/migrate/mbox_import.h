// Importing an mbox file into a Mailbox, resumably and exactly once
// (`holdfast import mbox`; docs/migration.md).
//
// Each message gets a MessageId derived from the file and its place in it
// (MboxMessageId), so a re-run after a crash, kill or error recognises what
// is already there with Mailbox::Knows() -- which also remembers messages the
// user deleted since: a re-run never brings deleted mail back. Deliveries go
// through the normal durable path (tmp/, fdatasync, index, rename), batched
// with Mailbox::CommitAll. The source is only read.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/message_id.h"
#include "fs/fs.h"
#include "migrate/import_report.h"
#include "migrate/mbox_reader.h"
#include "store/mailbox.h"

namespace holdfast {

struct MboxImportOptions {
  MboxFormat format = MboxFormat::kMboxrd;
  // A message is held in memory whole (its id hashes all of it before the
  // delivery can begin); larger ones are skipped and reported.
  uint64_t max_message_size = 50ull << 20;
  size_t batch = 64;  // deliveries committed together (shared syncs)
  // Called now and then with the bytes of the file read so far.
  std::function<void(uint64_t bytes_done)> progress;
};

// skipped_detail lines: offset, envelope, reason.
using MboxImportReport = ImportReport;

// Imports every message of `source` (its first `size` bytes) into `box`.
// Takes MAILDIR/holdfast-import.lock for the whole run (kBusy if another
// import into this mailbox is running), so two imports never race between
// Knows() and Commit(). A non-ok Status stops the import: what `report` counts
// is durable, the rest is not there (a re-run continues). kInvalid: `source`
// is not an mbox file; anything else is a failure of reading or storing.
Status ImportMbox(Fs& fs, File& source, uint64_t size, Mailbox& box, const MboxImportOptions& opts,
                  MboxImportReport* report);

// The id of the message at `offset` whose envelope line and content hash to
// `digest`, in a file whose first message hashes to `anchor` (the file's
// identity: it stays the same when mail is appended). The 48-bit time field
// is all ones, so that tombstones of deleted imports are kept for good (the
// index keeps a tombstone until its id's time is 30 days past) and imported
// ids are recognisable ("7ZZZZZZZZZ...").
MessageId MboxMessageId(const std::array<uint8_t, 32>& anchor, uint64_t offset,
                        const std::array<uint8_t, 32>& digest);

}  // namespace holdfast
