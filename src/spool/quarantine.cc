#include "spool/quarantine.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "util/record_log.h"

namespace holdfast {
namespace {

enum : uint8_t { kHeader = 1, kMessage = 2 };  // kMessage: the spool's Message record
constexpr uint32_t kVersion = 1;
constexpr size_t kMaxReason = 4096;
constexpr uint32_t kMaxHistory = 1000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<MessageId> IdOfName(const std::string& name) {
  if (name.size() < 3 || name.substr(name.size() - 2) != ".q") return std::nullopt;
  return MessageId::Parse(name.substr(0, name.size() - 2));
}

}  // namespace

std::string Quarantine::Encode(const QuarantineEntry& e) {
  Encoder h;
  h.U32(kVersion).U64(static_cast<uint64_t>(e.quarantined_ms)).Str(e.reason.substr(0, kMaxReason));
  size_t n = std::min<size_t>(e.history.size(), kMaxHistory);
  h.U32(static_cast<uint32_t>(n));
  for (size_t i = e.history.size() - n; i < e.history.size(); ++i) h.Str(e.history[i].substr(0, kMaxReason));
  return EncodeRecord(kHeader, h.data()) + EncodeMessageRecord(e.msg);
}

Result<QuarantineEntry> Quarantine::Parse(std::string_view bytes) {
  ParsedLog log = ParseRecordLog(bytes);
  if (log.tail != ParsedLog::Tail::kClean || log.records.size() != 2 || log.records[0].type != kHeader ||
      log.records[1].type != kMessage)
    return Status::Corrupt("not a quarantine entry");
  QuarantineEntry e;
  Decoder d(log.records[0].payload);
  if (d.U32() != kVersion) return Status::Corrupt("unknown quarantine entry version");
  e.quarantined_ms = static_cast<int64_t>(d.U64());
  e.reason = d.Str(kMaxReason);
  uint32_t n = d.U32();
  if (n > kMaxHistory) return Status::Corrupt("bad history length");
  for (uint32_t i = 0; i < n && d.ok(); ++i) e.history.push_back(d.Str(kMaxReason));
  if (!d.done()) return Status::Corrupt("malformed quarantine header");
  HF_ASSIGN_OR_RETURN(e.msg, DecodeMessagePayload(log.records[1].payload));
  return e;
}

std::string Quarantine::EntryPath(const MessageId& id) const { return JoinPath(dir_, id.ToString() + ".q"); }
std::string Quarantine::ReleasedPath(const MessageId& id) const {
  return JoinPath(JoinPath(dir_, "released"), id.ToString() + ".q");
}

Status Quarantine::Open() {
  for (const std::string& d : {dir_, JoinPath(dir_, "tmp"), JoinPath(dir_, "released")}) {
    Status made = fs_.MkDir(d, 0700);
    if (made.ok()) {
      HF_RETURN_IF_ERROR(fs_.SyncDir(DirName(d)));
    } else if (made.kind() != Status::Kind::kExists) {
      return made;
    }
  }
  // Leftovers of a Put cut short: never linked, so never promised to anyone.
  HF_ASSIGN_OR_RETURN(auto names, fs_.ReadDir(JoinPath(dir_, "tmp")));
  for (const auto& n : names) HF_RETURN_IF_ERROR(fs_.Unlink(JoinPath(JoinPath(dir_, "tmp"), n)));
  return Status::Ok();
}

Status Quarantine::Put(const QuarantineEntry& e) {
  if (Has(e.msg.id)) return Status::Ok();
  const std::string tmp = JoinPath(JoinPath(dir_, "tmp"), e.msg.id.ToString());
  (void)fs_.Unlink(tmp);  // a failed earlier try of this same entry
  HF_ASSIGN_OR_RETURN(auto f, fs_.CreateExclusive(tmp, 0600));
  Status s = f->Append(Encode(e));
  if (s.ok()) s = f->SyncData();
  f.reset();
  if (s.ok()) s = fs_.Link(tmp, EntryPath(e.msg.id));
  if (s.kind() == Status::Kind::kExists) s = Status::Ok();
  (void)fs_.Unlink(tmp);
  HF_RETURN_IF_ERROR(s);
  return fs_.SyncDir(dir_);
}

bool Quarantine::Has(const MessageId& id) {
  return fs_.Stat(EntryPath(id)).ok() || fs_.Stat(ReleasedPath(id)).ok();
}

Result<std::vector<QuarantineEntry>> Quarantine::ListDir(const std::string& dir) {
  HF_ASSIGN_OR_RETURN(auto names, fs_.ReadDir(dir));
  std::vector<QuarantineEntry> out;
  for (const auto& n : names) {
    if (!IdOfName(n)) continue;
    auto bytes = fs_.ReadFile(JoinPath(dir, n));
    if (!bytes.ok()) {
      if (bytes.status().kind() == Status::Kind::kNotFound) continue;  // released or deleted meanwhile
      return bytes.status();
    }
    auto e = Parse(*bytes);
    if (!e.ok()) return Status::Corrupt(JoinPath(dir, n) + ": " + e.status().message());
    out.push_back(std::move(e).value());
  }
  std::sort(out.begin(), out.end(),
            [](const QuarantineEntry& a, const QuarantineEntry& b) { return a.quarantined_ms < b.quarantined_ms; });
  return out;
}

Result<std::vector<QuarantineEntry>> Quarantine::List() { return ListDir(dir_); }
Result<std::vector<QuarantineEntry>> Quarantine::Released() { return ListDir(JoinPath(dir_, "released")); }

Result<QuarantineEntry> Quarantine::Get(const MessageId& id) {
  HF_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(EntryPath(id)));
  return Parse(bytes);
}

Status Quarantine::Audit(const std::string& line) {
  const std::string path = JoinPath(dir_, "audit.log");
  auto f = fs_.OpenAppend(path);
  if (!f.ok() && f.status().kind() == Status::Kind::kNotFound) {
    f = fs_.CreateExclusive(path, 0600);
    if (f.ok()) HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
  }
  HF_RETURN_IF_ERROR(f.status());
  HF_RETURN_IF_ERROR((*f)->Append("time_ms=" + std::to_string(NowMs()) + " " + line + "\n"));
  return (*f)->SyncData();
}

Status Quarantine::Release(const MessageId& id, const std::string& who) {
  HF_RETURN_IF_ERROR(fs_.Stat(EntryPath(id)).status());
  // Audited first: a release that happened is always in the log.
  HF_RETURN_IF_ERROR(Audit("event=release id=" + id.ToString() + " by=" + who));
  HF_RETURN_IF_ERROR(fs_.Rename(EntryPath(id), ReleasedPath(id)));
  HF_RETURN_IF_ERROR(fs_.SyncDir(JoinPath(dir_, "released")));
  return fs_.SyncDir(dir_);
}

Status Quarantine::Delete(const MessageId& id, const std::string& who) {
  HF_ASSIGN_OR_RETURN(auto e, Get(id));
  HF_RETURN_IF_ERROR(Audit("event=delete id=" + id.ToString() + " by=" + who + " from=<" + e.msg.mail_from +
                           "> size=" + std::to_string(e.msg.body.size())));
  HF_RETURN_IF_ERROR(fs_.Unlink(EntryPath(id)));
  return fs_.SyncDir(dir_);
}

Status Quarantine::ForgetReleased(const MessageId& id) {
  HF_RETURN_IF_ERROR(fs_.Unlink(ReleasedPath(id)));
  return fs_.SyncDir(JoinPath(dir_, "released"));
}

}  // namespace holdfast
