// Spool: group commit in front of SpoolLog, and delivery behind it.
//
// Sessions Submit() messages from any thread. One commit thread appends
// everything submitted since its last round and makes it durable with one
// fdatasync, then calls each submitter back: that is when LMTP may say 250
// (never before: the MTA drops its copy at 250). A delivery thread then
// files each message into its recipients' mailboxes and records Done per
// recipient; Done records ride along with the next commit. After a restart,
// every unretired message is delivered again, except where the mailbox
// already knows its MessageId (delivered, or delivered and deleted since):
// exactly once.
//
// With a filter chain configured, durable messages first pass the filter
// stage (filter_stage.cc, docs/filters.md): worker threads hand batches to
// worker processes, after recording the attempt durably in the spool (the
// ledger, so even a message that kills the daemon is found out); failed
// batches are split, a message that fails alone K times goes to the
// quarantine.
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
#include "events/event_log.h"
#include "filter/filter.h"
#include "spool/quarantine.h"
#include "spool/spool_log.h"
#include "store/mailbox.h"
#include "util/histogram.h"

namespace holdfast {

class Spool {
 public:
  struct Options {
    SpoolLog::Options log;
    std::string mail_dir;             // DATA/mail: a user's Maildir is mail_dir/USER
    MailboxOptions mailbox;
    TraceOptions trace;
    // The open mailboxes kept between batches, least recently used dropped
    // first past this many bytes (Mailbox::MemoryEstimate) or 512 of them.
    size_t mailbox_cache_bytes = 64 << 20;
    // Prepend the Received: line (filter/message_edit.h) when filing; off
    // when the chain has a trace step, which writes it instead.
    bool add_received = false;
    std::string hostname;  // for the Received: line
    std::chrono::milliseconds retry_delay{30000};  // after a failed mailbox delivery
    std::function<void(const std::string&)> log_line;  // one event a line
    // Several events in one call (one write); log_line each if unset.
    std::function<void(const std::vector<std::string>&)> log_lines;
    // Submit()'s `durable_line`s, whole lines, once per commit: logged
    // before any of that commit's callbacks runs.
    std::function<void(const std::vector<std::string>&)> log_durable;
    // The filter stage: off while filters.chain is empty.
    FilterOptions filters;
    std::vector<std::string> worker_argv;  // starts `holdfast filter-worker`
    std::string quarantine_dir;            // DATA/quarantine; "" = spool_dir/../quarantine
    std::chrono::milliseconds release_poll{2000};  // how often released/ is looked at
    // Where each state change of a message is recorded for `holdfast trace`
    // (docs/events.md); none if null. Outlives the Spool.
    EventLog* events = nullptr;
  };
  struct Stats {
    uint64_t accepted = 0, delivered = 0, commits = 0, already_there = 0, delivery_failures = 0;
    size_t unretired = 0;
    // Durable but not yet filed into every mailbox, and their bodies' bytes:
    // all held in memory and replayed on start. The server's back-pressure
    // watches these (docs/spool.md).
    size_t backlog_messages = 0;
    uint64_t backlog_bytes = 0;
    // The filter stage.
    uint64_t filter_batches = 0, worker_failures = 0, filter_failures = 0, filter_tempfails = 0;
    uint64_t quarantined = 0, discarded = 0, released = 0;
    size_t filtering = 0;  // waiting for or in a worker
    size_t replayed = 0;   // unretired messages found at start
    bool broken = false;   // an fdatasync failed: refusing mail until restart
    size_t open_mailboxes = 0;  // kept by the delivery thread (Options::mailbox_cache_bytes)
    size_t mailbox_bytes = 0;   // their Mailbox::MemoryEstimate()s
    // Group commit: messages per commit round, and the round's fdatasync time.
    Histogram commit_messages{{1, 2, 4, 8, 16, 32, 64, 128, 256}};
    Histogram fsync_seconds{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1}};
  };
  using Callback = std::function<void(Status)>;

  // Replays the spool and starts the commit and delivery threads.
  static Result<std::unique_ptr<Spool>> Start(Fs& fs, const std::string& spool_dir, Options opts);
  ~Spool();

  // `done` runs on the commit thread once `msg` is durable (ok) or has
  // failed (then nothing of it will be delivered... unless a later restart
  // finds it durable after all: see docs/spool.md).
  // `durable_line`, if not empty, goes to log_durable once `msg` is durable.
  void Submit(SpoolMessage msg, Callback done, std::string durable_line = {});
  // Commits what is queued, delivers what is durable (waiting at most
  // `deadline` for deliveries), then stops both threads.
  void Stop(std::chrono::milliseconds deadline);
  Stats stats();
  // The backlog alone (cheap: what the LMTP path checks per message).
  struct Backlog {
    size_t messages = 0;
    uint64_t bytes = 0;
  };
  Backlog backlog();
  // When the oldest message of the backlog was received (wall clock, ms);
  // 0 when the backlog is empty. Walks the backlog: for metrics, not per message.
  int64_t OldestBacklogMs();

 private:
  Spool(Fs& fs, Options opts) : fs_(fs), opts_(std::move(opts)) {}
  // The commit pipeline: CommitLoop appends each round of records and hands
  // it to SyncLoop, which makes every round handed over durable with one
  // fdatasync and answers them; the next round is appended meanwhile.
  void CommitLoop();
  void SyncLoop();
  void DeliveryLoop();
  struct Work;
  // filter_stage.cc
  bool filtering() const { return !opts_.filters.chain.empty(); }
  // One worker slot; a retry slot takes only messages that failed before.
  void FilterLoop(bool retry_slot);
  void RunFilterBatch(std::vector<Work>& batch, bool retry_slot);
  // Sets `w` aside in the quarantine and retires it; false (logged, `w`
  // left alone) when the quarantine cannot be written.
  bool QuarantineWork(Work& w, const std::string& reason);
  // Retires every pending recipient of `w` as `state` (mu_ held).
  void RetireLocked(Work& w, RcptState state);
  // Routes replayed entries at start: filter queue, quarantine or delivery.
  void AdmitReplayed(std::vector<SpoolEntry> unretired);
  // Commit thread: takes messages released from quarantine back.
  struct Pending;
  void PickUpReleased(std::vector<Pending>* batch);
  // Folders (Maildir++ `.NAME`) of `user` that exist: a replay checks them all.
  std::vector<std::string> ExistingFolders(const std::string& user);
  // Files every pending recipient of the batch, each mailbox's copies with
  // shared syncs; fills each Work's `done`.
  void DeliverBatch(std::vector<Work>& batch);
  // The open mailbox of `user`, created if needed; nullptr (logged) on error.
  Mailbox* OpenMailbox(const std::string& user, const std::string& folder, const MessageId& id);
  void Log(const std::string& line);
  void LogAll(const std::vector<std::string>& lines);
  void Record(std::vector<Event> events);
  void Record(Event e);

  Fs& fs_;
  Options opts_;
  std::unique_ptr<SpoolLog> log_;  // under log_mu_ (after Start)
  std::mutex log_mu_;  // taken before mu_ when both are held

  std::mutex mu_;
  std::condition_variable commit_cv_, delivery_cv_, idle_cv_;
  struct Pending {
    SpoolMessage msg;
    Callback done;
    std::string durable_line;
  };
  std::vector<Pending> submitted_;
  using DoneMark = SpoolLog::DoneMark;
  std::vector<DoneMark> done_marks_;
  // The filter ledger's records, for the commit thread to append. An
  // attempt must be durable before its batch goes to a worker.
  struct AttemptMark {
    std::vector<MessageId> ids;
    std::shared_ptr<int> state;  // 0 waiting, 1 durable, -1 failed (set under mu_)
  };
  struct OutcomeMark {
    MessageId id;
    FilterOutcome outcome;
    std::string reason;
  };
  std::vector<AttemptMark> attempt_marks_;
  std::vector<OutcomeMark> outcome_marks_;
  std::condition_variable attempt_cv_, filter_cv_;
  // A round appended by CommitLoop, waiting for SyncLoop's fdatasync.
  struct Round {
    std::vector<Pending> batch;
    std::vector<Status> appended;    // per message
    std::vector<AttemptMark> attempts;
    std::vector<bool> attempt_ok;
  };
  std::vector<Round> appended_rounds_;
  std::condition_variable sync_cv_;
  size_t unsynced_rounds_ = 0;  // appended, not yet answered by SyncLoop
  bool appender_done_ = false;  // CommitLoop returned: SyncLoop finishes what is left
  struct Work {
    Work(SpoolEntry e, bool replayed_, bool retry_, std::chrono::steady_clock::time_point due_)
        : entry(std::move(e)), replayed(replayed_), retry(retry_), due(due_) {}
    SpoolEntry entry;
    bool replayed;       // check the mailbox before delivering
    bool retry = false;  // ... with a fresh directory scan (a failed commit may have left an unconfirmed copy)
    std::chrono::steady_clock::time_point due;
    std::vector<std::pair<uint32_t, RcptState>> done;  // filled by DeliverBatch
    // The filter stage's: its verdict (folder, rewritten message), its
    // ledger, and which batch it may share (group 0: any; else only its
    // own group, at most max_batch: the halves of a failed batch).
    std::string folder;
    bool rewritten = false;
    std::string filtered;
    FilterLedger ledger;
    uint64_t group = 0;
    uint32_t max_batch = 0;  // 0: the configured batch size
    // In a worker when the daemon died: until it has been through a worker
    // with the daemon alive, batches run one at a time, so that another
    // death names its batch alone.
    bool suspect = false;
  };
  // A delivery round takes at most this much: bounds the latency of one
  // round and the number of tmp files open at once.
  static constexpr size_t kMaxBatch = 256;
  static constexpr size_t kMaxBatchBytes = 64u << 20;
  std::deque<Work> deliveries_;
  std::deque<Work> filter_queue_;
  size_t filters_running_ = 0;
  size_t running_suspects_ = 0;  // suspects in a worker now
  uint64_t next_group_ = 1;
  std::unique_ptr<Quarantine> quarantine_;
  std::chrono::steady_clock::time_point last_release_poll_{};
  std::vector<std::thread> filter_threads_;
  std::set<pid_t> worker_pids_;  // running workers, killed by Stop()
  bool stopping_ = false;
  bool commit_stopped_ = false;
  bool broken_ = false;  // an fdatasync failed: nothing more is accepted
  bool delivering_ = false;
  Stats stats_;
  size_t backlog_messages_ = 0;
  uint64_t backlog_bytes_ = 0;
  std::map<std::string, std::unique_ptr<Mailbox>> boxes_;  // delivery thread only
  std::map<std::string, uint64_t> box_used_;  // dir -> batch that last used it; delivery thread only
  uint64_t batch_tick_ = 0;
  // Drops the least recently used boxes_ past mailbox_cache_bytes.
  void TrimMailboxCache();
  std::set<std::string> scanned_;  // mailboxes whose directory this Spool has caught up with
  std::thread commit_thread_, sync_thread_, delivery_thread_;
};

}  // namespace holdfast
