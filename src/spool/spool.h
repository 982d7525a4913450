// Spool: group commit in front of SpoolLog, and delivery behind it.
//
// Sessions Submit() messages from any thread. One commit thread appends
// everything submitted since its last round and makes it durable with one
// fdatasync, then calls each submitter back: that is when LMTP may say 250
// (seed 001). A delivery thread then files each message into its
// recipients' mailboxes and records Done per recipient; Done records ride
// along with the next commit. After a restart, every unretired message is
// delivered again, except where the mailbox already knows its MessageId
// (delivered, or delivered and deleted since): exactly once.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/trace_headers.h"
#include "spool/spool_log.h"
#include "store/mailbox.h"

namespace holdfast {

class Spool {
 public:
  struct Options {
    SpoolLog::Options log;
    std::string mail_dir;             // DATA/mail: a user's Maildir is mail_dir/USER
    MailboxOptions mailbox;
    TraceOptions trace;
    std::chrono::milliseconds retry_delay{30000};  // after a failed mailbox delivery
    std::function<void(const std::string&)> log_line;  // one event a line
  };
  struct Stats {
    uint64_t accepted = 0, delivered = 0, commits = 0, already_there = 0, delivery_failures = 0;
    size_t unretired = 0;
    // Durable but not yet filed into every mailbox, and their bodies' bytes:
    // all held in memory and replayed on start. The server's back-pressure
    // watches these (docs/spool.md).
    size_t backlog_messages = 0;
    uint64_t backlog_bytes = 0;
  };
  using Callback = std::function<void(Status)>;

  // Replays the spool and starts the commit and delivery threads.
  static Result<std::unique_ptr<Spool>> Start(Fs& fs, const std::string& spool_dir, Options opts);
  ~Spool();

  // `done` runs on the commit thread once `msg` is durable (ok) or has
  // failed (then nothing of it will be delivered... unless a later restart
  // finds it durable after all: see docs/spool.md).
  void Submit(SpoolMessage msg, Callback done);
  // Commits what is queued, delivers what is durable (waiting at most
  // `deadline` for deliveries), then stops both threads.
  void Stop(std::chrono::milliseconds deadline);
  Stats stats();

 private:
  Spool(Fs& fs, Options opts) : fs_(fs), opts_(std::move(opts)) {}
  void CommitLoop();
  void DeliveryLoop();
  struct Work;
  // Files every pending recipient of the batch, each mailbox's copies with
  // shared syncs; fills each Work's `done`.
  void DeliverBatch(std::vector<Work>& batch);
  // The open mailbox of `user`, created if needed; nullptr (logged) on error.
  Mailbox* OpenMailbox(const std::string& user, const MessageId& id);
  void Log(const std::string& line);

  Fs& fs_;
  Options opts_;
  std::unique_ptr<SpoolLog> log_;  // commit thread only (after Start)

  std::mutex mu_;
  std::condition_variable commit_cv_, delivery_cv_, idle_cv_;
  struct Pending {
    SpoolMessage msg;
    Callback done;
  };
  std::vector<Pending> submitted_;
  struct DoneMark {
    MessageId id;
    uint32_t rcpt;
    RcptState state;
  };
  std::vector<DoneMark> done_marks_;
  struct Work {
    SpoolEntry entry;
    bool replayed;       // check the mailbox before delivering
    bool retry = false;  // ... with a fresh directory scan (a failed commit may have left an unconfirmed copy)
    std::chrono::steady_clock::time_point due;
    std::vector<std::pair<uint32_t, RcptState>> done;  // filled by DeliverBatch
  };
  // A delivery round takes at most this much: bounds the latency of one
  // round and the number of tmp files open at once.
  static constexpr size_t kMaxBatch = 256;
  static constexpr size_t kMaxBatchBytes = 64u << 20;
  std::deque<Work> deliveries_;
  bool stopping_ = false;
  bool commit_stopped_ = false;
  bool broken_ = false;  // an fdatasync failed: nothing more is accepted
  bool delivering_ = false;
  Stats stats_;
  size_t backlog_messages_ = 0;
  uint64_t backlog_bytes_ = 0;
  std::map<std::string, std::unique_ptr<Mailbox>> boxes_;  // delivery thread only
  std::set<std::string> scanned_;  // mailboxes whose directory this Spool has caught up with
  std::thread commit_thread_, delivery_thread_;
};

}  // namespace holdfast
