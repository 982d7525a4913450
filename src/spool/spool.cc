#include "spool/spool.h"

#include <algorithm>
#include <set>

namespace holdfast {

Result<std::unique_ptr<Spool>> Spool::Start(Fs& fs, const std::string& spool_dir, Options opts) {
  std::unique_ptr<Spool> spool(new Spool(fs, std::move(opts)));
  std::vector<SpoolEntry> unretired;
  HF_ASSIGN_OR_RETURN(spool->log_, SpoolLog::Open(fs, spool_dir, spool->opts_.log, &unretired));
  if (!unretired.empty()) spool->Log("spool replay: " + std::to_string(unretired.size()) + " message(s) to deliver");
  auto now = std::chrono::steady_clock::now();
  for (auto& e : unretired) {
    ++spool->backlog_messages_;
    spool->backlog_bytes_ += e.msg.body.size();
    spool->deliveries_.push_back(Work{std::move(e), true, false, now, {}});
  }
  spool->stats_.backlog_messages = spool->backlog_messages_;
  spool->stats_.backlog_bytes = spool->backlog_bytes_;
  spool->stats_.unretired = spool->log_->unretired();
  spool->commit_thread_ = std::thread([s = spool.get()] { s->CommitLoop(); });
  spool->delivery_thread_ = std::thread([s = spool.get()] { s->DeliveryLoop(); });
  return spool;
}

Spool::~Spool() { Stop(std::chrono::milliseconds(0)); }

void Spool::Log(const std::string& line) {
  if (opts_.log_line) opts_.log_line(line);
}

void Spool::Submit(SpoolMessage msg, Callback done) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stopping_ && !broken_) {
      submitted_.push_back(Pending{std::move(msg), std::move(done)});
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
    bool broken;
    {
      std::unique_lock<std::mutex> l(mu_);
      commit_cv_.wait(l, [&] { return commit_stopped_ || !submitted_.empty() || !done_marks_.empty(); });
      if (commit_stopped_ && submitted_.empty() && done_marks_.empty()) return;
      batch.swap(submitted_);
      marks.swap(done_marks_);
      broken = broken_;
    }
    std::vector<Status> appended(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      appended[i] = broken ? Status::Io("spool broken") : log_->AppendMessage(batch[i].msg);
    }
    for (const auto& m : marks) {
      Status s = broken ? Status::Ok() : log_->AppendDone(m.id, m.rcpt, m.state);
      if (!s.ok()) Log("spool: cannot record delivery of " + m.id.ToString() + ": " + s.ToString());
    }
    // One fdatasync for everyone in this round: group commit.
    Status sync = broken ? Status::Io("spool broken") : log_->Sync();
    if (!sync.ok() && !broken) {
      // After a failed fdatasync the kernel may have dropped the data
      // (fsyncgate): stop accepting rather than ack on a guess.
      Log("spool: fdatasync failed, refusing new mail until restart: " + sync.ToString());
    }
    std::vector<Work> durable;
    auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < batch.size(); ++i) {
      Status s = appended[i].ok() ? sync : appended[i];
      if (s.ok()) {
        SpoolEntry e;
        e.state.assign(batch[i].msg.rcpts.size(), RcptState::kPending);
        e.segment = log_->active_segment();
        e.msg = std::move(batch[i].msg);
        durable.push_back(Work{std::move(e), false, false, now, {}});
      }
      batch[i].done(s);
    }
    if (sync.ok() && !broken) {
      Status r = log_->RemoveRetiredSegments();
      if (!r.ok()) Log("spool: cannot remove retired segments: " + r.ToString());
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!sync.ok()) broken_ = true;
      ++stats_.commits;
      stats_.accepted += durable.size();
      stats_.unretired = log_->unretired();
      for (auto& w : durable) {
        ++backlog_messages_;
        backlog_bytes_ += w.entry.msg.body.size();
        deliveries_.push_back(std::move(w));
      }
      stats_.backlog_messages = backlog_messages_;
      stats_.backlog_bytes = backlog_bytes_;
    }
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

Mailbox* Spool::OpenMailbox(const std::string& user, const MessageId& id) {
  auto& box = boxes_[user];
  if (box) return box.get();
  const std::string dir = JoinPath(opts_.mail_dir, user);
  Status c = Mailbox::Create(fs_, dir);
  auto opened = c.ok() ? Mailbox::Open(fs_, dir, opts_.mailbox) : Result<std::unique_ptr<Mailbox>>(c);
  if (!opened.ok()) {
    Log("deliver " + id.ToString() + " to " + user + ": cannot open mailbox: " + opened.status().ToString());
    return nullptr;
  }
  box = std::move(opened).value();
  return box.get();
}

void Spool::DeliverBatch(std::vector<Work>& batch) {
  // The copies to commit, per mailbox, in batch order.
  struct Copy {
    Work* work;
    std::vector<uint32_t> rcpts;
    std::unique_ptr<Delivery> delivery;
  };
  std::map<std::string, std::vector<Copy>> by_user;
  std::set<std::string> broken;  // mailboxes to reopen: a failure may have left them inconsistent
  for (Work& w : batch) {
    const SpoolMessage& m = w.entry.msg;
    // One copy per mailbox, even if two recipients map to the same user.
    std::map<std::string, std::vector<uint32_t>> users;
    for (uint32_t i = 0; i < m.rcpts.size(); ++i) {
      if (w.entry.state[i] == RcptState::kPending) users[m.rcpts[i].user].push_back(i);
    }
    for (auto& [user, idx] : users) {
      if (broken.count(user)) continue;
      Mailbox* box = OpenMailbox(user, m.id);
      if (box == nullptr) continue;
      if (w.replayed) {
        // Delivered before the crash, maybe even fetched and deleted since:
        // the mailbox knows the MessageId either way. One scan per mailbox
        // confirms every copy made before the crash; a retry needs its own,
        // for the copy its failed attempt may have left.
        bool first_look = scanned_.insert(user).second;
        Status r = box->Refresh(first_look || w.retry);
        if (!r.ok()) {
          Log("deliver " + m.id.ToString() + " to " + user + ": " + r.ToString());
          broken.insert(user);
          continue;
        }
        if (box->Knows(m.id)) {
          for (uint32_t i : idx) w.done.emplace_back(i, RcptState::kAlreadyThere);
          Log("deliver " + m.id.ToString() + " to " + user + ": already delivered before the restart");
          continue;
        }
      }
      auto d = box->BeginDelivery(m.id);
      Status s = d.ok() ? Status::Ok() : d.status();
      if (s.ok()) s = (*d)->Write(TraceHeaders(m.body, m.mail_from, m.rcpts[idx.front()].address, opts_.trace));
      if (s.ok()) s = (*d)->Write(m.body);
      if (!s.ok()) {
        Log("deliver " + m.id.ToString() + " to " + user + " failed, will retry: " + s.ToString());
        broken.insert(user);
        continue;
      }
      by_user[user].push_back(Copy{&w, std::move(idx), std::move(d).value()});
    }
  }
  for (auto& [user, copies] : by_user) {
    if (broken.count(user)) continue;  // dropping the Deliveries removes their tmp files
    std::vector<Delivery*> ds;
    for (auto& c : copies) ds.push_back(c.delivery.get());
    auto results = boxes_[user]->CommitAll(ds);
    for (size_t k = 0; k < copies.size(); ++k) {
      const MessageId& id = copies[k].work->entry.msg.id;
      if (!results[k].ok()) {
        Log("deliver " + id.ToString() + " to " + user + " failed, will retry: " + results[k].status().ToString());
        broken.insert(user);
        continue;
      }
      Log("delivered " + id.ToString() + " to " + user + " uid=" + std::to_string(results[k]->uid));
      for (uint32_t i : copies[k].rcpts) copies[k].work->done.emplace_back(i, RcptState::kDelivered);
    }
  }
  by_user.clear();  // uncommitted Deliveries remove their tmp files through their Mailbox
  for (const auto& user : broken) boxes_.erase(user);
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
      return !due && !delivering_ && submitted_.empty();
    });
    stopping_ = true;
  }
  delivery_cv_.notify_all();
  if (delivery_thread_.joinable()) delivery_thread_.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    commit_stopped_ = true;
  }
  commit_cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
}

Spool::Stats Spool::stats() {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

}  // namespace holdfast
