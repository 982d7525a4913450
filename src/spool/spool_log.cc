#include "spool/spool_log.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <set>

#include "util/record_log.h"

namespace holdfast {
namespace {

enum : uint8_t { kSegmentHeader = 1, kMessage = 2, kDone = 3, kAttempt = 4, kOutcome = 5 };
constexpr size_t kMaxField = 4096;
constexpr uint32_t kMaxRecipients = 100000;  // writer and reader agree
constexpr uint32_t kMaxAttemptBatch = 4096;

MessageId ReadId(Decoder& d) {
  std::array<uint8_t, 16> b{};
  d.Bytes(b.data(), b.size());
  return MessageId::FromBytes(b);
}

std::optional<uint64_t> ParseSegmentName(const std::string& name) {
  if (name.size() != 20 || name.substr(16) != ".seg") return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

Result<std::vector<uint64_t>> ListSegments(Fs& fs, const std::string& dir) {
  HF_ASSIGN_OR_RETURN(auto names, fs.ReadDir(dir));
  std::vector<uint64_t> out;
  for (const auto& n : names) {
    if (auto seq = ParseSegmentName(n)) out.push_back(*seq);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Folds one segment's records into the per-message state, in file order: a
// message released from quarantine is spooled again under its MessageId,
// and the Done and ledger records of its first stay must not touch it.
void Collect(SegmentContents& parsed, uint64_t seq, std::map<MessageId, SpoolEntry>* entries) {
  static std::atomic<uint64_t> next_group{1};  // distinct per Attempt record within one process
  for (auto [kind, i] : parsed.order) {
    if (kind == SegmentContents::kMessageRecord) {
      SpoolMessage& m = parsed.messages[i];
      SpoolEntry& e = (*entries)[m.id];
      e = SpoolEntry{};
      e.state.assign(m.rcpts.size(), RcptState::kPending);
      e.segment = seq;
      e.msg = std::move(m);
      continue;
    }
    if (kind == SegmentContents::kDoneRecord) {
      const auto& d = parsed.done[i];
      auto it = entries->find(d.id);
      if (it != entries->end() && d.rcpt < it->second.state.size()) it->second.state[d.rcpt] = d.state;
      continue;
    }
    const auto& ev = parsed.filter_events[i];
    const uint64_t group = ev.outcome == 0 ? next_group++ : 0;
    for (const MessageId& id : ev.ids) {
      auto it = entries->find(id);
      if (it == entries->end()) continue;
      FilterLedger& l = it->second.ledger;
      if (ev.outcome == 0) {
        // An earlier attempt that never got its outcome: the daemon died
        // with it in a worker. Alone, that counts against the message.
        if (l.in_flight_batch == 1) {
          ++l.failures;
          l.history.push_back("the daemon died while it was being filtered");
        }
        l.in_flight_batch = static_cast<uint32_t>(ev.ids.size());
        l.in_flight_group = group;
        continue;
      }
      l.in_flight_batch = 0;
      if (ev.outcome == static_cast<uint8_t>(FilterOutcome::kFailed)) {
        ++l.failures;
        l.history.push_back(ev.reason);
      }
    }
  }
}

}  // namespace

const char* RcptStateName(RcptState s) {
  switch (s) {
    case RcptState::kPending: return "pending";
    case RcptState::kDelivered: return "delivered";
    case RcptState::kAlreadyThere: return "already-delivered";
    case RcptState::kQuarantined: return "quarantined";
    case RcptState::kDiscarded: return "discarded";
  }
  return "?";
}

bool SpoolEntry::Retired() const {
  return std::none_of(state.begin(), state.end(), [](RcptState s) { return s == RcptState::kPending; });
}

namespace {
std::string MessagePayload(const SpoolMessage& m) {
  Encoder e;
  size_t envelope = m.client.size() + m.helo.size() + m.mail_from.size() + 12 * m.rcpts.size();
  for (const auto& r : m.rcpts) envelope += r.address.size() + r.user.size() + r.detail.size();
  e.Reserve(64 + envelope + m.body.size());
  e.Bytes(m.id.bytes().data(), 16).U64(static_cast<uint64_t>(m.received_ms)).Str(m.client).Str(m.helo).Str(m.mail_from);
  e.U32(static_cast<uint32_t>(m.rcpts.size()));
  for (const auto& r : m.rcpts) e.Str(r.address).Str(r.user).Str(r.detail);
  e.U64(m.body.size()).Bytes(m.body.data(), m.body.size());
  if (m.released) e.U8(1);  // flags: absent in older records
  return e.Take();
}
}  // namespace

std::string EncodeMessageRecord(const SpoolMessage& m) { return EncodeRecord(kMessage, MessagePayload(m)); }

void AppendMessageRecord(std::string* out, const SpoolMessage& m) { AppendRecord(out, kMessage, MessagePayload(m)); }

Result<SpoolMessage> DecodeMessagePayload(std::string_view payload) {
  Decoder d(payload);
  SpoolMessage m;
  m.id = ReadId(d);
  m.received_ms = static_cast<int64_t>(d.U64());
  m.client = d.Str(kMaxField);
  m.helo = d.Str(kMaxField);
  m.mail_from = d.Str(kMaxField);
  uint32_t n = d.U32();
  if (n == 0 || n > kMaxRecipients) return Status::Corrupt("bad recipient count");
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    SpoolRecipient r;
    r.address = d.Str(kMaxField);
    r.user = d.Str(kMaxField);
    r.detail = d.Str(kMaxField);
    m.rcpts.push_back(std::move(r));
  }
  uint64_t len = d.U64();
  if (len > payload.size()) return Status::Corrupt("bad body length");
  m.body.resize(len);
  d.Bytes(m.body.data(), len);
  if (d.ok() && !d.done()) {
    uint8_t flags = d.U8();
    if (flags & ~1u) return Status::Corrupt("unknown message flags");
    m.released = (flags & 1) != 0;
  }
  if (!d.done()) return Status::Corrupt("malformed message record");
  return m;
}

Result<SegmentContents> ParseSegment(std::string_view bytes) {
  SegmentContents out;
  ParsedLog log = ParseRecordLog(bytes);
  if (log.tail == ParsedLog::Tail::kCorrupt)
    return Status::Corrupt("damaged record at offset " + std::to_string(log.valid_end));
  out.valid_end = log.valid_end;
  out.torn = log.tail == ParsedLog::Tail::kTorn;
  bool header = false;
  for (const LogRecord& rec : log.records) {
    Decoder d(rec.payload);
    switch (rec.type) {
      case kSegmentHeader: {
        uint32_t version = d.U32();
        (void)d.U64();  // sequence number
        (void)d.U64();  // created
        if (header || !d.done() || version != SpoolLog::kVersion) return Status::Corrupt("bad segment header");
        header = true;
        break;
      }
      case kMessage: {
        HF_ASSIGN_OR_RETURN(SpoolMessage m, DecodeMessagePayload(rec.payload));
        out.order.emplace_back(SegmentContents::kMessageRecord, out.messages.size());
        out.messages.push_back(std::move(m));
        break;
      }
      case kAttempt: {
        SegmentContents::FilterEvent ev;
        uint32_t n = d.U32();
        if (n == 0 || n > kMaxAttemptBatch) return Status::Corrupt("bad attempt size");
        for (uint32_t i = 0; i < n && d.ok(); ++i) ev.ids.push_back(ReadId(d));
        if (!d.done()) return Status::Corrupt("malformed attempt record");
        out.order.emplace_back(SegmentContents::kFilterRecord, out.filter_events.size());
        out.filter_events.push_back(std::move(ev));
        break;
      }
      case kOutcome: {
        SegmentContents::FilterEvent ev;
        ev.ids.push_back(ReadId(d));
        ev.outcome = d.U8();
        ev.reason = d.Str(kMaxField);
        if (!d.done() || ev.outcome < 1 || ev.outcome > 3) return Status::Corrupt("malformed outcome record");
        out.order.emplace_back(SegmentContents::kFilterRecord, out.filter_events.size());
        out.filter_events.push_back(std::move(ev));
        break;
      }
      case kDone: {
        SegmentContents::Done done;
        done.id = ReadId(d);
        done.rcpt = d.U32();
        uint8_t st = d.U8();
        if (!d.done() || st < 1 || st > 4) return Status::Corrupt("malformed done record");
        done.state = static_cast<RcptState>(st);
        out.order.emplace_back(SegmentContents::kDoneRecord, out.done.size());
        out.done.push_back(done);
        break;
      }
      default:
        return Status::Corrupt("unknown spool record type " + std::to_string(rec.type));
    }
    if (!header) return Status::Corrupt("segment does not start with a header");
  }
  return out;
}

std::string SpoolLog::SegmentPath(uint64_t seq) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.seg", static_cast<unsigned long long>(seq));
  return JoinPath(dir_, name);
}

Result<std::unique_ptr<SpoolLog>> SpoolLog::Open(Fs& fs, const std::string& dir, Options opts,
                                                  std::vector<SpoolEntry>* unretired) {
  Status made = fs.MkDir(dir, 0700);
  if (made.ok()) {
    HF_RETURN_IF_ERROR(fs.SyncDir(DirName(dir)));
  } else if (made.kind() != Status::Kind::kExists) {
    return made;
  }
  std::unique_ptr<SpoolLog> log(new SpoolLog(fs, dir, opts));
  HF_RETURN_IF_ERROR(log->Replay(unretired));
  return log;
}

Status SpoolLog::Replay(std::vector<SpoolEntry>* unretired) {
  HF_ASSIGN_OR_RETURN(segments_, ListSegments(fs_, dir_));
  std::map<MessageId, SpoolEntry> entries;
  for (size_t i = 0; i < segments_.size(); ++i) {
    const uint64_t seq = segments_[i];
    const std::string path = SegmentPath(seq);
    HF_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(path));
    auto parsed = ParseSegment(bytes);
    if (!parsed.ok()) return Status::Corrupt(path + ": " + parsed.status().message() + " (nothing was removed)");
    const bool last = i + 1 == segments_.size();
    if (parsed->torn && !last) return Status::Corrupt(path + ": torn in the middle of the spool (nothing was removed)");
    if (parsed->valid_end == 0) {
      // Created but its header never became durable: holds nothing.
      HF_RETURN_IF_ERROR(fs_.Unlink(path));
      HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
      segments_.erase(segments_.begin() + static_cast<long>(i));
      --i;
      continue;
    }
    if (parsed->torn) {
      // The last append never got its fdatasync, so nothing in it was acknowledged.
      HF_ASSIGN_OR_RETURN(auto f, fs_.OpenAppend(path));
      HF_RETURN_IF_ERROR(f->Truncate(parsed->valid_end));
      HF_RETURN_IF_ERROR(f->SyncData());
    }
    Collect(*parsed, seq, &entries);
    if (last) {
      HF_ASSIGN_OR_RETURN(active_, fs_.OpenAppend(path));
      active_seq_ = seq;
      active_size_ = parsed->valid_end;
    }
  }
  for (auto& [id, e] : entries) {
    uint32_t pending = static_cast<uint32_t>(std::count(e.state.begin(), e.state.end(), RcptState::kPending));
    if (pending == 0) continue;
    tracked_[id] = Tracked{e.segment, pending, e.state, e.msg.released};
    ++live_per_segment_[e.segment];
    if (unretired != nullptr) unretired->push_back(std::move(e));
  }
  if (!active_) HF_RETURN_IF_ERROR(StartSegment(segments_.empty() ? 1 : segments_.back() + 1));
  return Status::Ok();
}

Result<std::vector<SpoolEntry>> SpoolLog::Inspect(Fs& fs, const std::string& dir) {
  SpoolLog reader(fs, dir, Options{});
  HF_ASSIGN_OR_RETURN(auto segments, ListSegments(fs, dir));
  std::map<MessageId, SpoolEntry> entries;
  for (uint64_t seq : segments) {
    auto bytes = fs.ReadFile(reader.SegmentPath(seq));
    if (!bytes.ok()) {
      if (bytes.status().kind() == Status::Kind::kNotFound) continue;  // retired meanwhile
      return bytes.status();
    }
    HF_ASSIGN_OR_RETURN(auto parsed, ParseSegment(*bytes));
    // Only the segment being appended to may end in a torn (unfinished) record.
    if (parsed.torn && seq != segments.back()) return Status::Corrupt("segment " + std::to_string(seq) + " is torn");
    Collect(parsed, seq, &entries);
  }
  std::vector<SpoolEntry> out;
  for (auto& [id, e] : entries) {
    if (!e.Retired()) out.push_back(std::move(e));
  }
  return out;
}

Status SpoolLog::StartSegment(uint64_t seq) {
  HF_ASSIGN_OR_RETURN(auto file, fs_.CreateExclusive(SegmentPath(seq), 0600));
  Encoder h;
  h.U32(kVersion).U64(seq).U64(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                         std::chrono::system_clock::now().time_since_epoch())
                                                         .count()));
  std::string frame = EncodeRecord(kSegmentHeader, h.data());
  if (Status s = file->Append(frame); !s.ok()) {
    // Disk full, say: leave no empty segment behind to block the next try.
    (void)fs_.Unlink(SegmentPath(seq));
    return s;
  }
  active_ = std::move(file);
  active_seq_ = seq;
  active_size_ = frame.size();
  if (segments_.empty() || segments_.back() != seq) segments_.push_back(seq);
  dir_dirty_ = true;
  return Status::Ok();
}

Status SpoolLog::Append(const std::string& frame) {
  if (active_size_ >= opts_.segment_bytes) {
    // Older segments are always fully durable: Sync() only syncs the active one.
    HF_RETURN_IF_ERROR(Sync());
    HF_RETURN_IF_ERROR(StartSegment(active_seq_ + 1));
  }
  Status s = active_->Append(frame);
  if (!s.ok()) {
    // A partial frame would be a torn tail in the middle of later appends: cut it.
    (void)active_->Truncate(active_size_);
    return s;
  }
  active_size_ += frame.size();
  return Status::Ok();
}

Status SpoolLog::CheckMessage(const SpoolMessage& msg) const {
  if (msg.rcpts.empty()) return Status::Invalid("a spooled message needs a recipient");
  if (msg.rcpts.size() > kMaxRecipients) return Status::Invalid("more than 100000 recipients");
  // Never acknowledge what ParseSegment would refuse to read back.
  uint64_t size = 16 + 8 + 4 + 8 + msg.body.size();
  for (const std::string* f : {&msg.client, &msg.helo, &msg.mail_from}) {
    if (f->size() > kMaxField) return Status::Invalid("envelope field over " + std::to_string(kMaxField) + " bytes");
    size += 4 + f->size();
  }
  for (const auto& r : msg.rcpts) {
    for (const std::string* f : {&r.address, &r.user, &r.detail}) {
      if (f->size() > kMaxField) return Status::Invalid("recipient field over " + std::to_string(kMaxField) + " bytes");
      size += 4 + f->size();
    }
  }
  if (size > kMaxRecordPayload) return Status::Invalid("message too large for one spool record");
  if (tracked_.count(msg.id) != 0) return Status::Invalid("message " + msg.id.ToString() + " is already spooled");
  return Status::Ok();
}

Status SpoolLog::AppendMessage(const SpoolMessage& msg) { return AppendMessages({&msg})[0]; }

std::vector<Status> SpoolLog::AppendMessages(const std::vector<const SpoolMessage*>& msgs) {
  std::vector<Status> out(msgs.size());
  std::set<MessageId> ids;
  std::vector<size_t> in_frames;  // the messages frames_ holds
  auto write = [&] {
    if (in_frames.empty()) return;
    const Status s = Append(frames_);
    for (size_t i : in_frames) {
      if (!s.ok()) {
        out[i] = s;
        continue;
      }
      const SpoolMessage& m = *msgs[i];
      tracked_[m.id] = Tracked{active_seq_, static_cast<uint32_t>(m.rcpts.size()),
                               std::vector<RcptState>(m.rcpts.size(), RcptState::kPending), m.released};
      ++live_per_segment_[active_seq_];
    }
    frames_.clear();
    in_frames.clear();
  };
  for (size_t i = 0; i < msgs.size(); ++i) {
    out[i] = CheckMessage(*msgs[i]);
    if (out[i].ok() && !ids.insert(msgs[i]->id).second) {
      out[i] = Status::Invalid("message " + msgs[i]->id.ToString() + " is already spooled");
    }
    if (!out[i].ok()) continue;
    if (frames_.size() + msgs[i]->body.size() > kMaxWriteBytes) write();  // bounds the copy in memory
    AppendMessageRecord(&frames_, *msgs[i]);
    in_frames.push_back(i);
  }
  write();
  if (frames_.capacity() > 2 * kMaxWriteBytes) std::string().swap(frames_);  // a huge message's buffer is not kept
  return out;
}

Status SpoolLog::AppendDone(const MessageId& id, uint32_t rcpt, RcptState state) {
  return AppendDones({DoneMark{id, rcpt, state}});
}

Status SpoolLog::AppendDones(const std::vector<DoneMark>& marks) {
  std::string frames;
  std::vector<const DoneMark*> recorded;
  std::set<std::pair<MessageId, uint32_t>> seen;  // a recipient is finished once
  bool unknown = false;  // such a mark fails alone
  for (const DoneMark& m : marks) {
    auto it = tracked_.find(m.id);
    if (it == tracked_.end() || m.rcpt >= it->second.state.size()) {
      unknown = true;
      continue;
    }
    if (it->second.state[m.rcpt] != RcptState::kPending || !seen.emplace(m.id, m.rcpt).second) continue;
    Encoder e;
    e.Bytes(m.id.bytes().data(), 16).U32(m.rcpt).U8(static_cast<uint8_t>(m.state));
    AppendRecord(&frames, kDone, e.data());
    recorded.push_back(&m);
  }
  const Status invalid = unknown ? Status::Invalid("unknown spool recipient") : Status::Ok();
  if (recorded.empty()) return invalid;
  HF_RETURN_IF_ERROR(Append(frames));
  for (const DoneMark* m : recorded) {
    auto it = tracked_.find(m->id);
    it->second.state[m->rcpt] = m->state;
    if (--it->second.pending == 0) {
      --live_per_segment_[it->second.segment];
      tracked_.erase(it);
    }
  }
  return invalid;
}

Status SpoolLog::AppendAttempt(const std::vector<MessageId>& ids) {
  Encoder e;
  uint32_t n = 0;
  for (const MessageId& id : ids) n += Tracks(id);
  if (n == 0) return Status::Ok();
  if (n > kMaxAttemptBatch) return Status::Invalid("attempt batch too large");
  e.U32(n);
  for (const MessageId& id : ids) {
    if (Tracks(id)) e.Bytes(id.bytes().data(), 16);
  }
  return Append(EncodeRecord(kAttempt, e.data()));
}

Status SpoolLog::AppendOutcome(const MessageId& id, FilterOutcome outcome, std::string_view reason) {
  if (!Tracks(id)) return Status::Ok();
  Encoder e;
  e.Bytes(id.bytes().data(), 16).U8(static_cast<uint8_t>(outcome)).Str(reason.substr(0, kMaxField));
  return Append(EncodeRecord(kOutcome, e.data()));
}

Status SpoolLog::Sync() {
  HF_RETURN_IF_ERROR(active_->SyncData());
  if (dir_dirty_) {
    HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
    dir_dirty_ = false;
  }
  return Status::Ok();
}

size_t SpoolLog::RetiredSegments() const {
  size_t n = 0;
  while (n + 1 < segments_.size()) {
    auto live = live_per_segment_.find(segments_[n]);
    if (live != live_per_segment_.end() && live->second != 0) break;
    ++n;
  }
  return n;
}

Status SpoolLog::RemoveRetiredSegments(size_t at_most) {
  bool removed = false;
  for (; at_most > 0 && segments_.size() > 1 && live_per_segment_[segments_.front()] == 0; --at_most) {
    // Every message in it has all its copies durable in mailboxes.
    HF_RETURN_IF_ERROR(fs_.Unlink(SegmentPath(segments_.front())));
    live_per_segment_.erase(segments_.front());
    segments_.erase(segments_.begin());
    removed = true;
  }
  return removed ? fs_.SyncDir(dir_) : Status::Ok();
}

size_t SpoolLog::unretired() const { return tracked_.size(); }

}  // namespace holdfast
