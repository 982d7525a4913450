// The filter stage of the Spool (docs/filters.md), so that a message that
// crashes or hangs its filter cannot stall the others: batches of durable
// messages go to worker processes; the attempt is recorded in the spool
// before a worker sees them (the ledger); a batch that fails is split and its
// halves retried at once; a message that fails alone K times goes to the
// quarantine. Verdicts are not made durable: a restart filters again, and
// delivery recognises a copy already filed (any folder).
#include <signal.h>

#include <algorithm>
#include <optional>

#include "filter/process.h"
#include "filter/protocol.h"
#include "spool/spool.h"

namespace holdfast {
namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// stderr of a failed worker, cut and made one line.
std::string Excerpt(const std::string& err) {
  std::string out;
  for (char c : err.substr(0, 200)) out += (c == '\n' || c == '\r' || c == '\0') ? ' ' : c;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

void Spool::RetireLocked(Work& w, RcptState state) {
  for (uint32_t i = 0; i < w.entry.state.size(); ++i) {
    if (w.entry.state[i] != RcptState::kPending) continue;
    w.entry.state[i] = state;
    done_marks_.push_back(DoneMark{w.entry.msg.id, i, state});
  }
  --backlog_messages_;
  backlog_bytes_ -= w.entry.msg.body.size();
  stats_.backlog_messages = backlog_messages_;
  stats_.backlog_bytes = backlog_bytes_;
  commit_cv_.notify_one();
  idle_cv_.notify_all();
}

bool Spool::QuarantineWork(Work& w, const std::string& reason) {
  QuarantineEntry q;
  q.msg = w.entry.msg;
  q.msg.rcpts.clear();
  for (uint32_t i = 0; i < w.entry.state.size(); ++i) {
    if (w.entry.state[i] == RcptState::kPending) q.msg.rcpts.push_back(w.entry.msg.rcpts[i]);
  }
  q.quarantined_ms = WallMs();
  q.reason = reason;
  q.history = w.ledger.history;
  Status s = quarantine_->Put(q);
  if (!s.ok()) {
    Log("quarantine " + w.entry.msg.id.ToString() + " failed, will retry: " + s.ToString());
    return false;
  }
  Log("quarantined " + w.entry.msg.id.ToString() + " failures=" + std::to_string(w.ledger.failures) +
      " reason=\"" + reason + "\"");
  Record(Event("quarantined", w.entry.msg.id.ToString())
             .Add("reason", reason)
             .Add("failures", std::to_string(w.ledger.failures)));
  std::lock_guard<std::mutex> l(mu_);
  RetireLocked(w, RcptState::kQuarantined);
  ++stats_.quarantined;
  return true;
}

void Spool::AdmitReplayed(std::vector<SpoolEntry> unretired) {
  auto now = std::chrono::steady_clock::now();
  std::map<uint64_t, std::vector<Work>> crashed_batches;  // in a worker when the daemon died
  std::lock_guard<std::mutex> l(mu_);
  for (auto& e : unretired) {
    ++backlog_messages_;
    backlog_bytes_ += e.msg.body.size();
    Work w(std::move(e), true, false, now);
    w.ledger = w.entry.ledger;
    // Its quarantine entry is durable but the spool's Done was not.
    if (!w.entry.msg.released && quarantine_->Has(w.entry.msg.id)) {
      Log("spool replay: " + w.entry.msg.id.ToString() + " is in the quarantine already");
      Record(Event("replayed", w.entry.msg.id.ToString()).Add("action", "found in the quarantine already"));
      RetireLocked(w, RcptState::kQuarantined);
      continue;
    }
    if (!filtering() || w.entry.msg.released) {
      deliveries_.push_back(std::move(w));
      continue;
    }
    w.suspect = w.ledger.in_flight_batch > 0;
    if (w.ledger.in_flight_batch == 1) {
      ++w.ledger.failures;
      w.ledger.history.push_back("the daemon died while it was being filtered");
    }
    if (w.ledger.failures > 0) {
      // Failed alone before: it stays alone (K reached: quarantined first thing).
      w.group = next_group_++;
      w.max_batch = 1;
    }
    if (w.ledger.in_flight_batch > 1) {
      crashed_batches[w.ledger.in_flight_group].push_back(std::move(w));
    } else {
      filter_queue_.push_back(std::move(w));
    }
  }
  // A batch the daemon died with is suspect as a whole: its halves are
  // retried apart, like a failed worker's.
  for (auto& [group, works] : crashed_batches) {
    size_t half = (works.size() + 1) / 2;
    for (size_t i = 0; i < works.size(); ++i) {
      works[i].group = next_group_ + (i < half ? 0 : 1);
      works[i].max_batch = static_cast<uint32_t>(i < half ? half : works.size() - half);
      filter_queue_.push_back(std::move(works[i]));
    }
    next_group_ += 2;
  }
  stats_.filtering = filter_queue_.size();
}

void Spool::PickUpReleased(std::vector<Pending>* batch) {
  auto released = quarantine_->Released();
  if (!released.ok()) {
    Log("quarantine: cannot read released messages: " + released.status().ToString());
    return;
  }
  for (auto& q : *released) {
    const MessageId id = q.msg.id;
    if (log_->TracksReleased(id)) {
      // Back in the spool already (a crash came before the file was removed).
      (void)quarantine_->ForgetReleased(id);
      continue;
    }
    if (log_->Tracks(id)) continue;  // its original's Done is not written yet: next time
    q.msg.released = true;
    Log("released " + id.ToString() + " from the quarantine");
    batch->push_back(Pending{std::move(q.msg), [this, id](Status s) {
                               if (!s.ok()) return;  // stays in released/: tried again
                               Status f = quarantine_->ForgetReleased(id);
                               if (!f.ok()) Log("quarantine: cannot remove released " + id.ToString() + ": " + f.ToString());
                             },
                             std::string()});
  }
}

void Spool::FilterLoop(bool retry_slot) {
  // With retry slots, a message that failed before waits for one of them;
  // the ordinary slots take the others.
  const bool split = opts_.filters.retry_workers > 0;
  auto mine = [&](const Work& w) { return !split || (w.ledger.failures > 0) == retry_slot; };
  for (;;) {
    std::vector<Work> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      for (;;) {
        if (stopping_) return;
        auto now = std::chrono::steady_clock::now();
        // Suspects of a daemon death go first, one batch at a time.
        const bool suspects = running_suspects_ > 0 || std::any_of(filter_queue_.begin(), filter_queue_.end(),
                                                                   [](const Work& w) { return w.suspect; });
        auto first = suspects && filters_running_ > 0
                         ? filter_queue_.end()
                         : std::find_if(filter_queue_.begin(), filter_queue_.end(), [&](const Work& w) {
                             return w.due <= now && (w.suspect || !suspects) && mine(w);
                           });
        if (first != filter_queue_.end()) {
          // Group 0 shares with anyone; the halves of a failed batch only
          // among themselves, at most their own size.
          const uint64_t group = first->group;
          size_t limit = std::max<uint32_t>(1, opts_.filters.batch_size);
          if (first->max_batch != 0) limit = std::min<size_t>(limit, first->max_batch);
          for (auto it = first; it != filter_queue_.end() && batch.size() < limit;) {
            if (it->due <= now && it->group == group && mine(*it)) {
              batch.push_back(std::move(*it));
              it = filter_queue_.erase(it);
            } else {
              ++it;
            }
          }
          break;
        }
        std::optional<std::chrono::steady_clock::time_point> next;  // the first of ours to fall due
        for (const Work& w : filter_queue_) {
          if (mine(w) && (w.suspect || !suspects) && (!next || w.due < *next)) next = w.due;
        }
        if (!next || (suspects && filters_running_ > 0)) {
          filter_cv_.wait(l);
        } else {
          filter_cv_.wait_until(l, *next);
        }
      }
      ++filters_running_;
      running_suspects_ += static_cast<size_t>(
          std::count_if(batch.begin(), batch.end(), [](const Work& w) { return w.suspect; }));
    }
    const size_t suspects = static_cast<size_t>(
        std::count_if(batch.begin(), batch.end(), [](const Work& w) { return w.suspect; }));
    RunFilterBatch(batch, retry_slot);
    std::lock_guard<std::mutex> l(mu_);
    --filters_running_;
    running_suspects_ -= suspects;
    stats_.filtering = filter_queue_.size() + filters_running_;
    filter_cv_.notify_all();
    idle_cv_.notify_all();
  }
}

void Spool::RunFilterBatch(std::vector<Work>& batch, bool retry_slot) {
  const auto now = std::chrono::steady_clock::now();
  const uint32_t k = std::max<uint32_t>(1, opts_.filters.max_attempts);
  std::vector<Work> next_filter, next_delivery;  // queued at the end, under the lock
  std::vector<OutcomeMark> outcomes;
  auto requeue = [&](Work& w, std::chrono::milliseconds delay, uint64_t group, uint32_t max_batch) {
    w.due = now + delay;
    w.group = group;
    w.max_batch = max_batch;
    next_filter.push_back(std::move(w));
  };
  auto new_group = [&] {
    std::lock_guard<std::mutex> l(mu_);
    return next_group_++;
  };
  // A failure on this message alone: K of them and it is quarantined.
  auto fail_solo = [&](Work& w, const std::string& reason) {
    ++w.ledger.failures;
    w.ledger.history.push_back(reason);
    outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kFailed, reason});
    Log("filter " + w.entry.msg.id.ToString() + " failed (" + std::to_string(w.ledger.failures) + "/" +
        std::to_string(k) + "): " + reason);
    Record(Event("filter_failed", w.entry.msg.id.ToString())
               .Add("reason", reason)
               .Add("failures", std::to_string(w.ledger.failures) + "/" + std::to_string(k)));
    {
      std::lock_guard<std::mutex> l(mu_);
      ++stats_.filter_failures;
    }
    if (w.ledger.failures >= k) {
      if (!QuarantineWork(w, reason)) requeue(w, opts_.retry_delay, 0, 1);
      return;
    }
    requeue(w, std::chrono::milliseconds(0), new_group(), 1);
  };
  auto finish = [&] {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& o : outcomes) outcome_marks_.push_back(std::move(o));
    for (auto& w : next_filter) filter_queue_.push_front(std::move(w));
    for (auto& w : next_delivery) deliveries_.push_back(std::move(w));
    commit_cv_.notify_one();
    filter_cv_.notify_all();
    delivery_cv_.notify_one();
  };

  // Already failed K times (counted at replay): no more attempts.
  std::vector<Work> run;
  for (Work& w : batch) {
    if (w.ledger.failures >= k) {
      if (!QuarantineWork(w, w.ledger.history.empty() ? "failed " + std::to_string(k) + " times" : w.ledger.history.back()))
        requeue(w, opts_.retry_delay, 0, 1);
    } else {
      run.push_back(std::move(w));
    }
  }
  if (run.empty()) return finish();

  // The ledger: durable before any worker sees the batch, so a message that
  // takes the daemon down with it is counted too.
  auto state = std::make_shared<int>(0);
  {
    std::unique_lock<std::mutex> l(mu_);
    std::vector<MessageId> ids;
    for (const Work& w : run) ids.push_back(w.entry.msg.id);
    attempt_marks_.push_back(AttemptMark{std::move(ids), state});
    commit_cv_.notify_one();
    attempt_cv_.wait(l, [&] { return *state != 0 || commit_stopped_; });
    if (*state != 1) {
      l.unlock();
      for (Work& w : run) requeue(w, opts_.retry_delay, w.group, w.max_batch);
      return finish();
    }
    ++stats_.filter_batches;
  }

  std::string input;
  std::chrono::milliseconds per_message{0};
  for (const auto& step : opts_.filters.chain) per_message += step.timeout;
  for (const Work& w : run) {
    const SpoolMessage& m = w.entry.msg;
    FilterInput in{m.id, m.client, m.helo, m.mail_from, {}, m.body};
    for (const auto& r : m.rcpts) in.rcpts.push_back(r.address);
    input += EncodeFilterInput(in);
  }
  ProcessSpec spec;
  spec.argv = opts_.worker_argv;
  spec.input = input;
  spec.limits = ProcessLimits{opts_.filters.memory_bytes, opts_.filters.cpu_seconds, opts_.filters.open_files};
#if defined(__SANITIZE_ADDRESS__)
  // An AddressSanitizer build reserves terabytes of shadow address space as
  // it starts: the worker (this binary) cannot run under RLIMIT_AS at all.
  // The commands it runs still get the limit.
  spec.limits.memory_bytes = 0;
#endif
  // The worker times each step out itself; this catches a worker that hangs.
  spec.timeout = per_message * static_cast<int64_t>(run.size()) + std::chrono::seconds(10);
  // A retry is a suspect: it gets the CPU the innocent flow leaves over,
  // and its timeouts count only the time it was given (capped: loops end).
  if (retry_slot) {
    spec.nice = opts_.filters.retry_nice;
    spec.argv.push_back("--retry");  // its step timeouts forgive the CPU waits this costs, so must ours
    spec.timeout += per_message * static_cast<int64_t>(run.size() * FilterOptions::kRetryForgivenTimeouts);
  }
  spec.max_stdout = 2 * input.size() + (16u << 20);
  spec.started = [this](pid_t pid) {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) {
      ::kill(-pid, SIGKILL);  // Stop() came first
    } else {
      worker_pids_.insert(pid);
    }
  };
  auto res = RunProcess(spec);
  if (res.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    worker_pids_.erase(res->pid);
  }
  // The daemon lived through this batch: none of it is a suspect any more.
  for (Work& w : run) w.suspect = false;
  if (!res.ok()) {
    // Our trouble, not the messages': try again later, nothing counted.
    Log("filter: cannot start a worker: " + res.status().ToString());
    for (Work& w : run) {
      outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kTempFail, "no worker"});
      requeue(w, std::chrono::milliseconds(5000), w.group, w.max_batch);
    }
    return finish();
  }
  VerdictStream vs = DecodeVerdicts(res->out, run.size());
  bool stopping;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping = stopping_;
  }

  for (size_t i = 0; i < vs.verdicts.size(); ++i) {
    Work& w = run[i];
    Verdict& v = vs.verdicts[i];
    const std::string id = w.entry.msg.id.ToString();
    switch (v.kind) {
      case Verdict::Kind::kDeliver:
        outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kPassed, ""});
        Log("filtered " + id + " verdict=deliver" + (v.folder.empty() ? "" : " folder=" + v.folder) +
            (v.trail.empty() ? "" : " trail=\"" + v.trail + "\""));
        Record(Event("filtered", id).Add("verdict", "deliver").Add("folder", v.folder).Add("steps", v.trail)
                   .Add("rewritten", v.rewritten ? "yes" : "no"));
        w.folder = v.folder;
        w.rewritten = v.rewritten;
        w.filtered = std::move(v.body);
        w.due = now;
        next_delivery.push_back(std::move(w));
        break;
      case Verdict::Kind::kQuarantine:
        outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kPassed, ""});
        Record(Event("filtered", id).Add("verdict", "quarantine").Add("reason", v.reason).Add("steps", v.trail));
        if (!QuarantineWork(w, v.reason)) requeue(w, opts_.retry_delay, 0, 0);
        break;
      case Verdict::Kind::kDiscard: {
        outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kPassed, ""});
        Log("discarded " + id + " from=<" + w.entry.msg.mail_from + "> reason=\"" + v.reason + "\"");
        Record(Event("filtered", id).Add("verdict", "discard").Add("reason", v.reason).Add("steps", v.trail));
        std::lock_guard<std::mutex> l(mu_);
        RetireLocked(w, RcptState::kDiscarded);
        ++stats_.discarded;
        break;
      }
      case Verdict::Kind::kTempFail: {
        outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kTempFail, v.reason});
        Log("filter " + id + " temporary failure, retry in " + std::to_string(opts_.filters.tempfail_delay.count()) +
            " ms: " + v.reason);
        Record(Event("filtered", id).Add("verdict", "tempfail").Add("reason", v.reason).Add("steps", v.trail));
        {
          std::lock_guard<std::mutex> l(mu_);
          ++stats_.filter_tempfails;
        }
        requeue(w, opts_.filters.tempfail_delay, 0, 0);
        break;
      }
      case Verdict::Kind::kFailed:
        fail_solo(w, v.reason);
        break;
    }
  }

  std::vector<Work> unsettled;
  for (size_t i = vs.verdicts.size(); i < run.size(); ++i) unsettled.push_back(std::move(run[i]));
  if (unsettled.empty()) {
    if (!res->ok()) Log("filter: worker " + res->Describe(spec.limits) + " after settling its batch");
    return finish();
  }
  if (stopping) {
    // Killed by Stop(): not the messages' fault.
    for (Work& w : unsettled) outcomes.push_back(OutcomeMark{w.entry.msg.id, FilterOutcome::kTempFail, "shutdown"});
    return finish();
  }
  std::string reason = "worker " + res->Describe(spec.limits);
  if (!vs.error.empty() && res->ok()) reason += ": " + vs.error;
  if (std::string e = Excerpt(res->err); !e.empty()) reason += ": " + e;
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.worker_failures;
  }
  Log("filter: " + reason + " with " + std::to_string(unsettled.size()) + " message(s) unsettled");
  if (unsettled.size() == 1) {
    fail_solo(unsettled[0], reason);
    return finish();
  }
  // Bisection: the culprit is in one half; the innocent half goes at once.
  const size_t half = (unsettled.size() + 1) / 2;
  const uint64_t g1 = new_group(), g2 = new_group();
  for (size_t i = 0; i < unsettled.size(); ++i) {
    requeue(unsettled[i], std::chrono::milliseconds(0), i < half ? g1 : g2,
            static_cast<uint32_t>(i < half ? half : unsettled.size() - half));
  }
  finish();
}

}  // namespace holdfast
