// What every subcommand shares: where the data lives, the configuration,
// the exit codes an MTA understands (sysexits.h), and the data directory
// layout (docs/storage.md):
//
//   DATA/holdfast.toml    optional configuration
//   DATA/users            users, Dovecot passwd-file format
//   DATA/mail/NAME/       NAME's Maildir (tmp/ new/ cur/ + holdfast.index)
#pragma once

#include <sysexits.h>

#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "events/event_log.h"
#include "fs/fs.h"
#include "store/mailbox.h"
#include "users/user_name.h"

namespace holdfast::cli {

struct GlobalOptions {
  std::string data_dir;     // --data, else $HOLDFAST_DATA, else ./data
  std::string config_path;  // --config
};

class Context {
 public:
  explicit Context(GlobalOptions opts);
  // Loads the configuration; prints the error and returns EX_CONFIG on failure.
  int Init();

  Fs& fs() { return PosixFs(); }
  const Config& config() const { return config_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& config_path() const { return opts_.config_path; }
  std::string MailboxDir(const UserName& user) const;
  MailboxOptions MailboxOpts() const;
  // Creates DATA and DATA/mail if missing (durably).
  Status EnsureLayout();
  // Creates the user's Maildir if needed and opens it (running recovery).
  Result<std::unique_ptr<Mailbox>> OpenMailbox(const UserName& user);
  // For one delivery: reads only the index's tail (Mailbox::OpenForDelivery).
  Result<std::unique_ptr<Mailbox>> OpenMailboxForDelivery(const UserName& user);
  // Records events for `holdfast trace` (DATA/events). A command's work does
  // not fail for want of it: a log that cannot be opened is reported once on
  // stderr and the events are dropped.
  void Record(std::vector<Event> events);

 private:
  GlobalOptions opts_;
  std::string data_dir_;
  Config config_;
  std::unique_ptr<EventLog> events_;
  bool events_failed_ = false;
};

// The user named on the command line if the users file has it; else prints
// why ("holdfast <cmd>: no such user ...") and sets *rc (EX_NOUSER, EX_TEMPFAIL).
std::optional<UserName> FindExistingUser(Context& ctx, const std::string& cmd, const std::string& name, int* rc);

// One line on stderr: "holdfast <cmd>: <message>".
void PrintError(const std::string& cmd, const std::string& message);
// The sysexits code for a failed Status: temporary trouble is EX_TEMPFAIL so
// an MTA retries; bad data EX_DATAERR.
int ExitCodeFor(const Status& s);

}  // namespace holdfast::cli
