#include "spool/spool.h"

#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <set>

#include "filter/message_edit.h"
#include "util/thread_name.h"

namespace holdfast {

namespace {

// "received" (or "replayed", "released"): the envelope, for trace queries by
// sender, recipient and Message-ID.
Event EnvelopeEvent(std::string kind, const SpoolMessage& m) {
  Event e(std::move(kind), m.id.ToString());
  std::string to;
  for (const auto& r : m.rcpts) to += (to.empty() ? "" : ",") + r.address;
  e.Add("client", m.client).Add("helo", m.helo).Add("from", m.mail_from).Add("to", to);
  e.Add("size", std::to_string(m.body.size())).Add("message_id", HeaderValue(m.body, "Message-ID"));
  if (e.kind != "received") e.Add("received", FormatEventTime(m.received_ms));
  return e;
}

}  // namespace

Result<std::unique_ptr<Spool>> Spool::Start(Fs& fs, const std::string& spool_dir, Options opts) {
  std::unique_ptr<Spool> spool(new Spool(fs, std::move(opts)));
  std::vector<SpoolEntry> unretired;
  HF_ASSIGN_OR_RETURN(spool->log_, SpoolLog::Open(fs, spool_dir, spool->opts_.log, &unretired));
  if (spool->opts_.quarantine_dir.empty()) spool->opts_.quarantine_dir = JoinPath(DirName(spool_dir), "quarantine");
  spool->quarantine_ = std::make_unique<Quarantine>(fs, spool->opts_.quarantine_dir);
  HF_RETURN_IF_ERROR(spool->quarantine_->Open());
  if (!unretired.empty()) spool->Log("spool replay: " + std::to_string(unretired.size()) + " message(s) to deliver");
  spool->stats_.replayed = unretired.size();
  std::vector<Event> replayed;
  for (const auto& e : unretired) {
    std::string pending;
    for (size_t i = 0; i < e.msg.rcpts.size(); ++i) {
      if (e.state[i] == RcptState::kPending) pending += (pending.empty() ? "" : ",") + e.msg.rcpts[i].address;
    }
    replayed.push_back(EnvelopeEvent("replayed", e.msg).Add("pending", pending));
  }
  spool->Record(std::move(replayed));
  spool->AdmitReplayed(std::move(unretired));
  spool->stats_.backlog_messages = spool->backlog_messages_;
  spool->stats_.backlog_bytes = spool->backlog_bytes_;
  spool->stats_.unretired = spool->log_->unretired();
  spool->commit_thread_ = NameThread(std::thread([s = spool.get()] { s->CommitLoop(); }), "hf-commit");
  spool->sync_thread_ = NameThread(std::thread([s = spool.get()] { s->SyncLoop(); }), "hf-sync");
  spool->delivery_thread_ = NameThread(std::thread([s = spool.get()] { s->DeliveryLoop(); }), "hf-deliver");
  if (spool->filtering()) {
    for (uint32_t i = 0; i < std::max<uint32_t>(1, spool->opts_.filters.workers); ++i)
      spool->filter_threads_.push_back(NameThread(std::thread([s = spool.get()] { s->FilterLoop(false); }), "hf-filter"));
    for (uint32_t i = 0; i < spool->opts_.filters.retry_workers; ++i)
      spool->filter_threads_.push_back(NameThread(std::thread([s = spool.get()] { s->FilterLoop(true); }), "hf-filter-retry"));
  }
  return spool;
}

Spool::~Spool() { Stop(std::chrono::milliseconds(0)); }

void Spool::Log(const std::string& line) {
  if (opts_.log_line) opts_.log_line(line);
}

void Spool::LogAll(const std::vector<std::string>& lines) {
  if (lines.empty()) return;
  if (opts_.log_lines) {
    opts_.log_lines(lines);
  } else {
    for (const std::string& l : lines) Log(l);
  }
}

void Spool::Record(std::vector<Event> events) {
  if (opts_.events) opts_.events->Append(std::move(events));
}

void Spool::Record(Event e) {
  if (opts_.events) opts_.events->Append(std::move(e));
}

void Spool::Submit(SpoolMessage msg, Callback done, std::string durable_line) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stopping_ && !broken_) {
      submitted_.push_back(Pending{std::move(msg), std::move(done), std::move(durable_line)});
      commit_cv_.notify_one();
      return;
    }
  }
  done(Status::Busy(broken_ ? "the spool cannot sync to disk; restart holdfast" : "shutting down"));
}

void Spool::CommitLoop() {
  for (;;) {
    std::vector<Pending> batch;
    std::vector<DoneMark> marks;
    std::vector<AttemptMark> attempts;
    std::vector<OutcomeMark> outcomes;
    bool broken, all_synced, stopped;
    {
      std::unique_lock<std::mutex> l(mu_);
      auto has_work = [&] {
        return commit_stopped_ || !submitted_.empty() || !done_marks_.empty() || !attempt_marks_.empty() ||
               !outcome_marks_.empty();
      };
      // Wake for released/ when its poll is due (at once after a start); the
      // poll waits for a sync in flight (below), so look again shortly then.
      const auto now = std::chrono::steady_clock::now();
      auto wake = std::max(last_release_poll_ + opts_.release_poll, now);
      if (unsynced_rounds_ > 0) wake = std::max(wake, now + std::chrono::milliseconds(10));
      commit_cv_.wait_until(l, wake, has_work);
      if (commit_stopped_ && submitted_.empty() && done_marks_.empty() && attempt_marks_.empty() &&
          outcome_marks_.empty()) {
        appender_done_ = true;
        sync_cv_.notify_one();
        return;
      }
      batch.swap(submitted_);
      marks.swap(done_marks_);
      attempts.swap(attempt_marks_);
      outcomes.swap(outcome_marks_);
      broken = broken_;
      // A released copy is forgotten from the quarantine once its record is
      // tracked: only when every appended record is durable too.
      all_synced = unsynced_rounds_ == 0;
      stopped = commit_stopped_;  // read under mu_, which guards it
    }
    std::lock_guard<std::mutex> g(log_mu_);
    if (!broken && !stopped && all_synced &&
        std::chrono::steady_clock::now() - last_release_poll_ >= opts_.release_poll) {
      last_release_poll_ = std::chrono::steady_clock::now();
      PickUpReleased(&batch);
    }
    if (batch.empty() && marks.empty() && attempts.empty() && outcomes.empty()) continue;
    Round r;
    r.appended.resize(batch.size());
    // One write for the round's messages, one for its Done records.
    if (broken) {
      std::fill(r.appended.begin(), r.appended.end(), Status::Io("spool broken"));
    } else if (!batch.empty()) {
      std::vector<const SpoolMessage*> msgs;
      for (const Pending& p : batch) msgs.push_back(&p.msg);
      r.appended = log_->AppendMessages(msgs);
    }
    if (!broken && !marks.empty()) {
      Status s = log_->AppendDones(marks);
      if (!s.ok()) Log("spool: cannot record " + std::to_string(marks.size()) + " deliveries: " + s.ToString());
    }
    for (const auto& o : outcomes) {
      Status s = broken ? Status::Ok() : log_->AppendOutcome(o.id, o.outcome, o.reason);
      if (!s.ok()) Log("spool: cannot record filter outcome of " + o.id.ToString() + ": " + s.ToString());
    }
    for (const auto& a : attempts) {
      Status s = broken ? Status::Io("spool broken") : log_->AppendAttempt(a.ids);
      if (!s.ok() && !broken) Log("spool: cannot record a filter attempt: " + s.ToString());
      r.attempt_ok.push_back(s.ok());
    }
    r.batch = std::move(batch);
    r.attempts = std::move(attempts);
    {
      std::lock_guard<std::mutex> l(mu_);
      appended_rounds_.push_back(std::move(r));
      ++unsynced_rounds_;
    }
    sync_cv_.notify_one();
  }
}

void Spool::SyncLoop() {
  for (;;) {
    std::vector<Round> rounds;
    bool broken;
    {
      std::unique_lock<std::mutex> l(mu_);
      sync_cv_.wait(l, [&] { return !appended_rounds_.empty() || appender_done_; });
      if (appended_rounds_.empty()) return;
      rounds.swap(appended_rounds_);
      broken = broken_;
    }
    // One fdatasync for every round appended so far: group commit.
    std::shared_ptr<File> file;
    bool dir = false;
    size_t retired = 0;  // segments retired by Done records this sync makes durable
    if (!broken) {
      std::lock_guard<std::mutex> g(log_mu_);
      file = log_->active_file();
      dir = log_->TakeDirDirty();
      retired = log_->RetiredSegments();
    }
    const auto sync_start = std::chrono::steady_clock::now();
    Status sync = broken ? Status::Io("spool broken") : file->SyncData();
    if (sync.ok() && dir) sync = fs_.SyncDir(log_->dir());
    const double sync_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - sync_start).count();
    if (!sync.ok() && !broken) {
      // After a failed fdatasync the kernel may have dropped the data
      // (fsyncgate): stop accepting rather than ack on a guess.
      Log("spool: fdatasync failed, refusing new mail until restart: " + sync.ToString());
    }
    size_t unretired = 0;
    {
      std::lock_guard<std::mutex> g(log_mu_);
      if (sync.ok() && !broken) {
        Status r = log_->RemoveRetiredSegments(retired);
        if (!r.ok()) Log("spool: cannot remove retired segments: " + r.ToString());
      }
      unretired = log_->unretired();
    }
    if (opts_.log_durable) {
      // Before any 250 goes out, so the log never lags an acknowledgement.
      std::vector<std::string> lines;
      for (const Round& r : rounds) {
        for (size_t i = 0; i < r.batch.size(); ++i) {
          if (r.appended[i].ok() && sync.ok() && !r.batch[i].durable_line.empty()) lines.push_back(r.batch[i].durable_line);
        }
      }
      if (!lines.empty()) opts_.log_durable(lines);
    }
    std::vector<Work> durable;
    auto now = std::chrono::steady_clock::now();
    size_t messages = 0;
    for (Round& r : rounds) {
      // Recorded once durable, before any 250: a crash in between leaves the
      // message to the replay, which records it as "replayed".
      std::vector<Event> received;
      for (size_t i = 0; i < r.batch.size(); ++i) {
        if (r.appended[i].ok() && sync.ok()) {
          received.push_back(EnvelopeEvent(r.batch[i].msg.released ? "released" : "received", r.batch[i].msg));
        }
      }
      Record(std::move(received));
      for (size_t i = 0; i < r.batch.size(); ++i) {
        Status s = r.appended[i].ok() ? sync : r.appended[i];
        if (s.ok()) {
          SpoolEntry e;
          e.state.assign(r.batch[i].msg.rcpts.size(), RcptState::kPending);
          e.msg = std::move(r.batch[i].msg);
          const bool released = e.msg.released;
          durable.emplace_back(std::move(e), released, released, now);
        }
        r.batch[i].done(s);
      }
      messages += r.batch.size();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!sync.ok()) broken_ = true;
      stats_.broken = broken_;
      ++stats_.commits;
      stats_.accepted += durable.size();
      if (!broken) {
        stats_.fsync_seconds.Observe(sync_seconds);
        if (messages > 0) stats_.commit_messages.Observe(static_cast<double>(messages));
      }
      stats_.unretired = unretired;
      for (auto& w : durable) {
        ++backlog_messages_;
        backlog_bytes_ += w.entry.msg.body.size();
        if (filtering() && !w.entry.msg.released) {
          filter_queue_.push_back(std::move(w));
        } else {
          deliveries_.push_back(std::move(w));
        }
      }
      stats_.backlog_messages = backlog_messages_;
      stats_.backlog_bytes = backlog_bytes_;
      stats_.filtering = filter_queue_.size() + filters_running_;
      // An attempt whose record is not durable must not run.
      for (const Round& r : rounds) {
        for (size_t i = 0; i < r.attempts.size(); ++i) *r.attempts[i].state = r.attempt_ok[i] && sync.ok() ? 1 : -1;
      }
      unsynced_rounds_ -= rounds.size();
    }
    idle_cv_.notify_all();
    attempt_cv_.notify_all();
    filter_cv_.notify_all();
    delivery_cv_.notify_one();
  }
}

void Spool::DeliveryLoop() {
  for (;;) {
    std::vector<Work> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      for (;;) {
        // Stop() already gave due work its deadline: leave the rest in the spool.
        if (stopping_) {
          delivering_ = false;
          idle_cv_.notify_all();
          return;
        }
        // Everything due, up to a bound: the mailboxes' syncs are shared
        // across the batch (Mailbox::CommitAll).
        auto now = std::chrono::steady_clock::now();
        size_t bytes = 0;
        for (auto it = deliveries_.begin(); it != deliveries_.end() && batch.size() < kMaxBatch && bytes < kMaxBatchBytes;) {
          if (it->due > now) {
            ++it;
            continue;
          }
          bytes += it->entry.msg.body.size();
          batch.push_back(std::move(*it));
          it = deliveries_.erase(it);
        }
        if (!batch.empty()) break;
        if (deliveries_.empty()) {
          delivery_cv_.wait(l);
        } else {
          auto next = std::min_element(deliveries_.begin(), deliveries_.end(),
                                       [](const Work& a, const Work& b) { return a.due < b.due; })->due;
          delivery_cv_.wait_until(l, next);
        }
      }
      delivering_ = true;
    }
    DeliverBatch(batch);
    {
      std::lock_guard<std::mutex> l(mu_);
      delivering_ = false;
      for (Work& w : batch) {
        for (auto [rcpt, state] : w.done) {
          w.entry.state[rcpt] = state;
          done_marks_.push_back(DoneMark{w.entry.msg.id, rcpt, state});
          ++(state == RcptState::kDelivered ? stats_.delivered : stats_.already_there);
        }
        if (w.entry.msg.released && w.entry.Retired()) ++stats_.released;
        w.done.clear();
        if (w.entry.Retired()) {
          --backlog_messages_;
          backlog_bytes_ -= w.entry.msg.body.size();
          continue;
        }
        ++stats_.delivery_failures;
        // A failed commit may still have left the copy in the mailbox (say
        // the directory fsync failed after the rename): check, like a replay.
        w.replayed = true;
        w.retry = true;
        w.due = std::chrono::steady_clock::now() + opts_.retry_delay;
        deliveries_.push_back(std::move(w));
      }
      stats_.backlog_messages = backlog_messages_;
      stats_.backlog_bytes = backlog_bytes_;
    }
    commit_cv_.notify_one();
    idle_cv_.notify_all();
  }
}

Mailbox* Spool::OpenMailbox(const std::string& user, const std::string& folder, const MessageId& id) {
  const std::string dir = folder.empty() ? JoinPath(opts_.mail_dir, user)
                                         : JoinPath(JoinPath(opts_.mail_dir, user), "." + folder);
  box_used_[dir] = batch_tick_;
  auto& box = boxes_[dir];
  if (box) return box.get();
  Status c = Mailbox::Create(fs_, JoinPath(opts_.mail_dir, user));
  if (c.ok() && !folder.empty()) {
    c = Mailbox::Create(fs_, dir);
    // Maildir++: marks a folder for other Maildir tools (Dovecot).
    if (c.ok()) {
      auto marker = fs_.CreateExclusive(JoinPath(dir, "maildirfolder"), 0600);
      if (!marker.ok() && marker.status().kind() != Status::Kind::kExists) c = marker.status();
    }
  }
  // Filing needs only the next UID: the journal tail (a replay check loads
  // the whole index, Refresh). So neither time nor memory grows with the box.
  auto opened = c.ok() ? Mailbox::OpenForDelivery(fs_, dir, opts_.mailbox) : Result<std::unique_ptr<Mailbox>>(c);
  if (!opened.ok()) {
    Log("deliver " + id.ToString() + " to " + dir + ": cannot open mailbox: " + opened.status().ToString());
    boxes_.erase(dir);
    box_used_.erase(dir);
    return nullptr;
  }
  box = std::move(opened).value();
  return box.get();
}

std::vector<std::string> Spool::ExistingFolders(const std::string& user) {
  std::vector<std::string> out{""};
  auto names = fs_.ReadDir(JoinPath(opts_.mail_dir, user));
  if (!names.ok()) return out;
  for (const auto& n : *names) {
    if (n.size() < 2 || n[0] != '.') continue;
    auto st = fs_.Stat(JoinPath(JoinPath(opts_.mail_dir, user), n));
    if (st.ok() && st->is_dir) out.push_back(n.substr(1));
  }
  return out;
}

void Spool::DeliverBatch(std::vector<Work>& batch) {
  // The copies to commit, per mailbox directory, in batch order.
  struct Copy {
    Work* work;
    std::vector<uint32_t> rcpts;
    std::unique_ptr<Delivery> delivery;
  };
  std::map<std::string, std::vector<Copy>> by_box;
  std::set<std::string> broken;  // mailboxes to reopen: a failure may have left them inconsistent
  auto box_key = [&](const std::string& user, const std::string& folder) {
    return folder.empty() ? JoinPath(opts_.mail_dir, user) : JoinPath(JoinPath(opts_.mail_dir, user), "." + folder);
  };
  for (Work& w : batch) {
    const SpoolMessage& m = w.entry.msg;
    // One copy per mailbox, even if two recipients map to the same user.
    std::map<std::string, std::vector<uint32_t>> users;
    for (uint32_t i = 0; i < m.rcpts.size(); ++i) {
      if (w.entry.state[i] == RcptState::kPending) users[m.rcpts[i].user].push_back(i);
    }
    for (auto& [user, idx] : users) {
      const std::string key = box_key(user, w.folder);
      if (broken.count(key)) continue;
      Mailbox* box = OpenMailbox(user, w.folder, m.id);
      if (box == nullptr) continue;
      if (w.replayed) {
        // Delivered before the crash, maybe even fetched and deleted since:
        // the mailbox knows the MessageId either way. One scan per mailbox
        // confirms every copy made before the crash; a retry needs its own,
        // for the copy its failed attempt may have left. With filters, the
        // copy may be in any folder (a verdict need not repeat itself).
        bool known = false, failed = false;
        const std::vector<std::string> folders =
            filtering() || !w.folder.empty() ? ExistingFolders(user) : std::vector<std::string>{""};
        for (const std::string& folder : folders) {
          Mailbox* b = OpenMailbox(user, folder, m.id);
          if (b == nullptr) {
            failed = true;
            break;
          }
          bool first_look = scanned_.insert(box_key(user, folder)).second;
          Status r = b->Refresh(first_look || w.retry);
          if (!r.ok()) {
            Log("deliver " + m.id.ToString() + " to " + user + ": " + r.ToString());
            broken.insert(box_key(user, folder));
            failed = true;
            break;
          }
          if (b->Knows(m.id)) {
            known = true;
            break;
          }
        }
        if (failed) {
          broken.insert(key);
          continue;
        }
        if (known) {
          for (uint32_t i : idx) w.done.emplace_back(i, RcptState::kAlreadyThere);
          Log("deliver " + m.id.ToString() + " to " + user + ": already delivered before the restart");
          Record(Event("already_delivered", m.id.ToString()).Add("user", user));
          continue;
        }
      }
      const std::string& body = w.rewritten ? w.filtered : m.body;
      auto d = box->BeginDelivery(m.id);
      Status s = d.ok() ? Status::Ok() : d.status();
      if (s.ok()) {
        // One write per copy: a system call costs more than copying the body.
        std::string copy = TraceHeaders(body, m.mail_from, m.rcpts[idx.front()].address, opts_.trace);
        if (opts_.add_received) {
          copy += FormatHeaders(body, {HeaderField{"Received", ReceivedValue(m.helo, m.client, opts_.hostname, m.id)}});
        }
        copy.reserve(copy.size() + body.size());
        copy += body;
        s = (*d)->Write(copy);
      }
      if (!s.ok()) {
        Log("deliver " + m.id.ToString() + " to " + user + " failed, will retry: " + s.ToString());
        broken.insert(key);
        continue;
      }
      by_box[key].push_back(Copy{&w, std::move(idx), std::move(d).value()});
    }
  }
  std::vector<Event> delivered;  // one write for the batch's events
  std::vector<std::string> delivered_lines;  // and one for its log lines
  for (auto& [key, copies] : by_box) {
    if (broken.count(key)) continue;  // dropping the Deliveries removes their tmp files
    std::vector<Delivery*> ds;
    for (auto& c : copies) ds.push_back(c.delivery.get());
    auto results = boxes_[key]->CommitAll(ds);
    for (size_t k = 0; k < copies.size(); ++k) {
      const MessageId& id = copies[k].work->entry.msg.id;
      if (!results[k].ok()) {
        Log("deliver " + id.ToString() + " to " + key + " failed, will retry: " + results[k].status().ToString());
        broken.insert(key);
        continue;
      }
      const std::string& folder = copies[k].work->folder;
      const SpoolMessage& m = copies[k].work->entry.msg;
      const std::string& user = m.rcpts[copies[k].rcpts.front()].user;
      delivered_lines.push_back("delivered " + id.ToString() + " to " + user +
                                (folder.empty() ? "" : " folder=" + folder) + " uid=" + std::to_string(results[k]->uid));
      std::string to;
      for (uint32_t i : copies[k].rcpts) to += (to.empty() ? "" : ",") + m.rcpts[i].address;
      delivered.push_back(Event("delivered", id.ToString())
                 .Add("user", user)
                 .Add("folder", folder)
                 .Add("uid", std::to_string(results[k]->uid))
                 .Add("to", to)
                 .Add("file", results[k]->name));
      for (uint32_t i : copies[k].rcpts) copies[k].work->done.emplace_back(i, RcptState::kDelivered);
    }
  }
  LogAll(delivered_lines);
  Record(std::move(delivered));
  by_box.clear();  // uncommitted Deliveries remove their tmp files through their Mailbox
  for (const auto& key : broken) {
    boxes_.erase(key);
    box_used_.erase(key);
  }
  TrimMailboxCache();
  ++batch_tick_;
}

void Spool::TrimMailboxCache() {
  constexpr size_t kMaxOpenMailboxes = 512;  // each holds a descriptor
  size_t total = 0;
  bool trim = false;
  for (const auto& [dir, box] : boxes_) total += box->MemoryEstimate();
  while (!boxes_.empty() && (total > opts_.mailbox_cache_bytes || boxes_.size() > kMaxOpenMailboxes)) {
    auto oldest = std::min_element(box_used_.begin(), box_used_.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
    if (oldest == box_used_.end() || oldest->second == batch_tick_) break;  // all in use by this batch
    auto it = boxes_.find(oldest->first);
    if (it != boxes_.end()) {
      total -= it->second->MemoryEstimate();
      // Only a box holding a whole index frees much: give that back (RSS).
      trim = trim || it->second->MemoryEstimate() > (1u << 20);
      boxes_.erase(it);
    }
    box_used_.erase(oldest);
  }
  if (trim) ::malloc_trim(0);
  std::lock_guard<std::mutex> l(mu_);
  stats_.open_mailboxes = boxes_.size();
  stats_.mailbox_bytes = total;
}

void Spool::Stop(std::chrono::milliseconds deadline) {
  {
    std::unique_lock<std::mutex> l(mu_);
    if (commit_stopped_) return;
    auto until = std::chrono::steady_clock::now() + deadline;
    // Let deliveries that are due finish, within the deadline.
    idle_cv_.wait_until(l, until, [&] {
      auto now = std::chrono::steady_clock::now();
      bool due = std::any_of(deliveries_.begin(), deliveries_.end(), [&](const Work& w) { return w.due <= now; });
      return !due && !delivering_ && submitted_.empty() && unsynced_rounds_ == 0;
    });
    stopping_ = true;
    // Workers in flight are killed; their messages stay in the spool and
    // are filtered again at the next start (their outcome: "shutdown").
    for (pid_t pid : worker_pids_) ::kill(-pid, SIGKILL);
  }
  filter_cv_.notify_all();
  for (auto& t : filter_threads_) t.join();
  filter_threads_.clear();
  delivery_cv_.notify_all();
  if (delivery_thread_.joinable()) delivery_thread_.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    commit_stopped_ = true;
  }
  commit_cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
  if (sync_thread_.joinable()) sync_thread_.join();
}

Spool::Stats Spool::stats() {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

Spool::Backlog Spool::backlog() {
  std::lock_guard<std::mutex> l(mu_);
  Backlog b;
  b.messages = backlog_messages_;
  b.bytes = backlog_bytes_;
  return b;
}

int64_t Spool::OldestBacklogMs() {
  std::lock_guard<std::mutex> l(mu_);
  int64_t oldest = 0;
  for (const auto* q : {&deliveries_, &filter_queue_}) {
    for (const Work& w : *q) {
      if (oldest == 0 || w.entry.msg.received_ms < oldest) oldest = w.entry.msg.received_ms;
    }
  }
  return oldest;
}

}  // namespace holdfast
