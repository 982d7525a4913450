#include "events/event_log.h"

#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "util/record_log.h"
#include "util/thread_name.h"

namespace holdfast {

namespace {

constexpr int64_t kDayMs = 86400 * 1000;
constexpr uint32_t kMaxFields = 64;
constexpr size_t kMaxValue = 64 * 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t DayOf(int64_t ms) { return ms >= 0 ? ms / kDayMs : (ms - kDayMs + 1) / kDayMs; }

std::tm UtcTm(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(DayOf(ms) * 86400 + (ms - DayOf(ms) * kDayMs) / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

}  // namespace

const std::string* Event::Field(std::string_view key) const {
  for (const auto& [k, v] : fields) {
    if (k == key) return &v;
  }
  return nullptr;
}

// payload := time_ms:u64 kind:str id:str n:u32 (key:str value:str){n}
std::string EncodeEvent(const Event& e) {
  Encoder enc;
  enc.U64(static_cast<uint64_t>(e.time_ms)).Str(e.kind).Str(e.id);
  const uint32_t n = static_cast<uint32_t>(std::min<size_t>(e.fields.size(), kMaxFields));
  enc.U32(n);
  for (uint32_t i = 0; i < n; ++i) {
    enc.Str(e.fields[i].first.substr(0, 256)).Str(e.fields[i].second.substr(0, kMaxValue));
  }
  return enc.data();
}

bool DecodeEvent(std::string_view payload, Event* out) {
  Decoder d(payload);
  Event e;
  e.time_ms = static_cast<int64_t>(d.U64());
  e.kind = d.Str(256);
  e.id = d.Str(256);
  const uint32_t n = d.U32();
  if (!d.ok() || n > kMaxFields) return false;
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    std::string k = d.Str(256);
    std::string v = d.Str(kMaxValue);
    e.fields.emplace_back(std::move(k), std::move(v));
  }
  if (!d.done() || e.kind.empty()) return false;
  *out = std::move(e);
  return true;
}

int64_t EventFileDay(std::string_view name) {
  // YYYYMMDD-...
  if (name.size() < 9 || name[8] != '-') return -1;
  int v[3] = {0, 0, 0};
  const int widths[3] = {4, 2, 2};
  size_t pos = 0;
  for (int f = 0; f < 3; ++f) {
    for (int i = 0; i < widths[f]; ++i, ++pos) {
      if (name[pos] < '0' || name[pos] > '9') return -1;
      v[f] = v[f] * 10 + (name[pos] - '0');
    }
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31) return -1;
  std::tm tm{};
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  return static_cast<int64_t>(timegm(&tm)) / 86400;
}

std::string FormatEventTime(int64_t ms) {
  // Outside years 1970..9999 (only a damaged file has such a time): the number.
  if (ms < 0 || ms > 253402300799999) return "@" + std::to_string(ms);
  std::tm tm = UtcTm(ms);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(((ms % 1000) + 1000) % 1000));
  return buf;
}

Result<std::unique_ptr<EventLog>> EventLog::Open(Fs& fs, std::string dir, Options opts) {
  HF_RETURN_IF_ERROR(fs.EnsureDir(dir));
  std::unique_ptr<EventLog> log(new EventLog(fs, std::move(dir), opts));
  log->Prune(NowMs());
  if (opts.flusher) log->flusher_ = NameThread(std::thread([l = log.get()] { l->FlushLoop(); }), "hf-events");
  return log;
}

EventLog::~EventLog() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  (void)Sync();
}

std::string EventLog::first_error() {
  std::lock_guard<std::mutex> l(mu_);
  return first_error_;
}

Status EventLog::Roll(int64_t now_ms) {
  if (file_) {
    if (dirty_) HF_RETURN_IF_ERROR(file_->SyncData());
    file_.reset();
    dirty_ = false;
  }
  const std::tm tm = UtcTm(now_ms);
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%04d%02d%02d-%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  for (int tries = 0; tries < 1000; ++tries) {
    std::string name = std::string(stamp) + "-" + std::to_string(getpid()) + "-" + std::to_string(seq_++) + ".events";
    auto f = fs_.CreateExclusive(JoinPath(dir_, name), 0640);
    if (!f.ok() && f.status().kind() == Status::Kind::kExists) continue;
    if (!f.ok()) return f.status();
    // The name must survive a crash with the events in it.
    HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
    file_ = std::move(*f);
    file_name_ = std::move(name);
    file_day_ = DayOf(now_ms);
    file_bytes_ = 0;
    return Status::Ok();
  }
  return Status::Io("no free event file name in " + dir_);
}

void EventLog::Append(Event e) {
  std::vector<Event> v;
  v.push_back(std::move(e));
  Append(std::move(v));
}

void EventLog::Append(std::vector<Event> events) {
  if (events.empty()) return;
  const int64_t now = NowMs();
  std::string bytes;
  for (Event& e : events) {
    if (e.time_ms == 0) e.time_ms = now;
    bytes += EncodeRecord(kRecordType, EncodeEvent(e));
  }
  std::lock_guard<std::mutex> l(mu_);
  Status s = Status::Ok();
  if (!file_ || DayOf(now) != file_day_ || file_bytes_ >= opts_.max_file_bytes) s = Roll(now);
  if (s.ok()) s = file_->Append(bytes);
  if (s.ok()) {
    file_bytes_ += bytes.size();
    dirty_ = true;
    if (opts_.sync_interval.count() == 0) {
      s = file_->SyncData();
      if (s.ok()) dirty_ = false;
    }
  }
  if (!s.ok()) {
    // A failed append may have left part of a frame: start a new file next
    // time rather than append after it (readers stop at a torn frame).
    file_.reset();
    errors_ += events.size();
    if (first_error_.empty()) first_error_ = s.ToString();
    lost_ = s;
    return;
  }
  appended_ += events.size();
  if (DayOf(now) != last_prune_day_) cv_.notify_all();  // the flusher prunes
}

Status EventLog::Sync() {
  std::lock_guard<std::mutex> l(mu_);
  if (!lost_.ok()) {
    // Not everything since the last Sync reached the file: say so once.
    Status lost = lost_;
    lost_ = Status::Ok();
    return lost;
  }
  if (!file_ || !dirty_) return Status::Ok();
  Status s = file_->SyncData();
  if (s.ok()) {
    dirty_ = false;
  } else {
    file_.reset();
    ++errors_;
    if (first_error_.empty()) first_error_ = s.ToString();
  }
  return s;
}

void EventLog::Prune(int64_t now_ms) {
  {
    std::lock_guard<std::mutex> l(mu_);
    last_prune_day_ = DayOf(now_ms);
  }
  if (opts_.retention_days <= 0) return;
  auto names = fs_.ReadDir(dir_);
  if (!names.ok()) return;
  const int64_t oldest_kept = DayOf(now_ms) - opts_.retention_days;
  bool removed = false;
  for (const auto& name : *names) {
    const int64_t day = EventFileDay(name);
    if (day < 0 || day >= oldest_kept || name.find(".events") == std::string::npos) continue;
    std::lock_guard<std::mutex> l(mu_);
    if (name == file_name_ && file_) continue;
    removed |= fs_.Unlink(JoinPath(dir_, name)).ok();
  }
  if (removed) (void)fs_.SyncDir(dir_);
}

void EventLog::FlushLoop() {
  const auto interval = opts_.sync_interval.count() > 0 ? opts_.sync_interval : std::chrono::milliseconds(1000);
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, interval);
    if (stop_) break;
    const int64_t now = NowMs();
    const bool prune = DayOf(now) != last_prune_day_;
    l.unlock();
    (void)Sync();
    if (prune) Prune(now);
    l.lock();
  }
}

Result<std::vector<Event>> ReadEvents(Fs& fs, const std::string& dir, const EventFilter& filter,
                                      std::vector<std::string>* warnings) {
  auto names = fs.ReadDir(dir);
  if (!names.ok()) {
    if (names.status().kind() == Status::Kind::kNotFound) return std::vector<Event>{};
    return names.status();
  }
  std::sort(names->begin(), names->end());
  std::vector<Event> out;
  for (const auto& name : *names) {
    const int64_t day = EventFileDay(name);
    if (day < 0 || name.size() < 7 || name.compare(name.size() - 7, 7, ".events") != 0) continue;
    if (filter.since_ms && (day + 1) * kDayMs <= filter.since_ms) continue;
    if (filter.until_ms && day * kDayMs > filter.until_ms) continue;
    const std::string path = JoinPath(dir, name);
    auto data = fs.ReadFile(path);
    if (!data.ok()) {
      warnings->push_back(path + ": " + data.status().ToString());
      continue;
    }
    ParsedLog parsed = ParseRecordLog(*data);
    // A torn tail is the append a crash cut short: not a warning.
    if (parsed.tail == ParsedLog::Tail::kCorrupt) {
      warnings->push_back(path + ": damaged at byte " + std::to_string(parsed.valid_end) + ", " +
                          std::to_string(parsed.salvaged.size()) + " event(s) recovered past it");
    }
    auto take = [&](const std::vector<LogRecord>& records) {
      for (const auto& r : records) {
        Event e;
        if (r.type != EventLog::kRecordType || !DecodeEvent(r.payload, &e)) {
          warnings->push_back(path + ": unreadable event at byte " + std::to_string(r.offset));
          continue;
        }
        if (filter.since_ms && e.time_ms < filter.since_ms) continue;
        if (filter.until_ms && e.time_ms > filter.until_ms) continue;
        if (filter.keep && !filter.keep(e)) continue;
        out.push_back(std::move(e));
      }
    };
    take(parsed.records);
    take(parsed.salvaged);
  }
  std::stable_sort(out.begin(), out.end(), [](const Event& a, const Event& b) { return a.time_ms < b.time_ms; });
  return out;
}

}  // namespace holdfast
