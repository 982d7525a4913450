// Quarantine: where the filter stage sets a message aside, with the reason
// and its history. Nothing is dropped silently: a
// message leaves quarantine only by release (back to the spool, filters
// skipped) or delete, and both are written to an audit log.
//
// DATA/quarantine/
//   <id>.q           one per message (format: docs/filters.md, "Quarantine")
//   tmp/             where an entry is written before it gets its name
//   released/<id>.q  released by the operator; the server takes it back into
//                    the spool within seconds and then removes it
//   audit.log        one line per release or delete
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fs/fs.h"
#include "spool/spool_log.h"

namespace holdfast {

struct QuarantineEntry {
  SpoolMessage msg;                  // the recipients it was set aside for
  int64_t quarantined_ms = 0;        // wall clock
  std::string reason;                // the last failure, or the filter's word
  std::vector<std::string> history;  // every failed attempt, oldest first
};

class Quarantine {
 public:
  explicit Quarantine(Fs& fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}

  // Creates the directories (durably) and clears tmp/.
  Status Open();
  // Durable before it returns: written in tmp/, synced, linked to <id>.q
  // (exclusive), directory synced. An existing <id>.q is kept (a replay).
  Status Put(const QuarantineEntry& e);
  // <id>.q or released/<id>.q exists: the quarantine has (or had) it.
  bool Has(const MessageId& id);
  Result<std::vector<QuarantineEntry>> List();
  Result<QuarantineEntry> Get(const MessageId& id);
  // Moves <id>.q to released/ (durably) for the server to pick up.
  Status Release(const MessageId& id, const std::string& who);
  // Removes <id>.q (durably).
  Status Delete(const MessageId& id, const std::string& who);
  // What the server should take back into the spool.
  Result<std::vector<QuarantineEntry>> Released();
  Status ForgetReleased(const MessageId& id);

  static Result<QuarantineEntry> Parse(std::string_view bytes);
  static std::string Encode(const QuarantineEntry& e);

 private:
  std::string EntryPath(const MessageId& id) const;
  std::string ReleasedPath(const MessageId& id) const;
  Result<std::vector<QuarantineEntry>> ListDir(const std::string& dir);
  Status Audit(const std::string& line);

  Fs& fs_;
  std::string dir_;
};

}  // namespace holdfast
