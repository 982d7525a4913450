#include "store/mailbox_index.h"

#include "util/record_log.h"

namespace holdfast {
namespace {

constexpr size_t kMaxNameLength = 1024;

std::string BaseOf(const std::string& name) { return name.substr(0, name.find(':')); }

// Counted in MailboxIndex::pending_.
bool Pending(const IndexEntry& e) { return !e.confirmed && !e.expunge_requested; }

}  // namespace

const char* SubdirName(MaildirDir d) { return d == MaildirDir::kNew ? "new" : "cur"; }

std::string IndexEntry::Path(const std::string& maildir) const {
  return maildir + "/" + SubdirName(dir) + "/" + name;
}
std::string IndexEntry::Base() const { return BaseOf(name); }
std::string IndexEntry::Flags() const {
  auto pos = name.find(":2,");
  return pos == std::string::npos ? "" : name.substr(pos + 3);
}

std::string IndexRecord::Encode() const {
  Encoder e;
  switch (type) {
    case RecordType::kHeader:
      e.U32(MailboxIndex::kVersion).U32(uidvalidity).U64(created_ms);
      break;
    case RecordType::kAdd:
      e.U32(entry.uid).Bytes(entry.id.bytes().data(), 16).U8(static_cast<uint8_t>(entry.dir)).Str(entry.name);
      e.U64(entry.size).U64(entry.vsize).Bytes(entry.sha256.data(), 32);
      // Only when not 0, so an index of LF-terminated messages stays what
      // earlier versions wrote and read.
      if (entry.eol_added != 0) e.U8(entry.eol_added);
      break;
    case RecordType::kMove:
      e.U32(uid).U8(static_cast<uint8_t>(entry.dir)).Str(entry.name);
      break;
    case RecordType::kExpungeRequest:
      e.U32(uid).Bytes(id.bytes().data(), 16);
      break;
    case RecordType::kGone:
      e.U32(uid).Bytes(id.bytes().data(), 16).U8(static_cast<uint8_t>(reason));
      break;
    case RecordType::kUidNext:
      e.U32(uid);
      break;
    case RecordType::kTombstone:
      e.U32(uid).Bytes(id.bytes().data(), 16);
      break;
    case RecordType::kConfirm:
      e.U32(uid);
      break;
  }
  return EncodeRecord(static_cast<uint8_t>(type), e.data());
}

Result<IndexRecord> IndexRecord::Decode(uint8_t type, std::string_view payload) {
  Decoder d(payload);
  IndexRecord r;
  auto read_id = [&d]() {
    std::array<uint8_t, 16> b{};
    d.Bytes(b.data(), b.size());
    return MessageId::FromBytes(b);
  };
  auto read_dir = [&d]() {
    uint8_t v = d.U8();
    if (v > 1) return std::optional<MaildirDir>();
    return std::optional<MaildirDir>(static_cast<MaildirDir>(v));
  };
  std::optional<MaildirDir> dir = MaildirDir::kNew;
  switch (type) {
    case static_cast<uint8_t>(RecordType::kHeader): {
      r.type = RecordType::kHeader;
      uint32_t version = d.U32();
      r.uidvalidity = d.U32();
      r.created_ms = d.U64();
      if (d.ok() && version != MailboxIndex::kVersion)
        return Status::Corrupt("index version " + std::to_string(version) + " is not supported");
      break;
    }
    case static_cast<uint8_t>(RecordType::kAdd):
      r.type = RecordType::kAdd;
      r.entry.uid = d.U32();
      r.entry.id = read_id();
      dir = read_dir();
      r.entry.name = d.Str(kMaxNameLength);
      r.entry.size = d.U64();
      r.entry.vsize = d.U64();
      d.Bytes(r.entry.sha256.data(), 32);
      if (d.ok() && !d.done()) {
        r.entry.eol_added = d.U8();
        if (d.ok() && (r.entry.eol_added == 0 || r.entry.eol_added > 2))
          return Status::Corrupt("bad eol_added " + std::to_string(r.entry.eol_added) + " in index record");
      }
      r.uid = r.entry.uid;
      break;
    case static_cast<uint8_t>(RecordType::kMove):
      r.type = RecordType::kMove;
      r.uid = d.U32();
      dir = read_dir();
      r.entry.name = d.Str(kMaxNameLength);
      break;
    case static_cast<uint8_t>(RecordType::kExpungeRequest):
      r.type = RecordType::kExpungeRequest;
      r.uid = d.U32();
      r.id = read_id();
      break;
    case static_cast<uint8_t>(RecordType::kGone): {
      r.type = RecordType::kGone;
      r.uid = d.U32();
      r.id = read_id();
      uint8_t reason = d.U8();
      if (reason > 2) return Status::Corrupt("unknown gone reason " + std::to_string(reason));
      r.reason = static_cast<GoneReason>(reason);
      break;
    }
    case static_cast<uint8_t>(RecordType::kUidNext):
      r.type = RecordType::kUidNext;
      r.uid = d.U32();
      break;
    case static_cast<uint8_t>(RecordType::kTombstone):
      r.type = RecordType::kTombstone;
      r.uid = d.U32();
      r.id = read_id();
      break;
    case static_cast<uint8_t>(RecordType::kConfirm):
      r.type = RecordType::kConfirm;
      r.uid = d.U32();
      break;
    default:
      return Status::Corrupt("unknown index record type " + std::to_string(type));
  }
  if (!dir) return Status::Corrupt("bad directory in index record");
  r.entry.dir = *dir;
  if (!d.done()) return Status::Corrupt("malformed index record of type " + std::to_string(type));
  return r;
}

Status MailboxIndex::Apply(const IndexRecord& r) {
  if (r.type != RecordType::kHeader && !has_header()) return Status::Corrupt("index record before the header");
  switch (r.type) {
    case RecordType::kHeader:
      if (has_header()) return Status::Corrupt("second index header");
      if (r.uidvalidity == 0) return Status::Corrupt("uidvalidity 0");
      uidvalidity_ = r.uidvalidity;
      return Status::Ok();
    case RecordType::kAdd: {
      const IndexEntry& e = r.entry;
      if (e.uid == 0 || live_.count(e.uid) != 0) return Status::Corrupt("uid " + std::to_string(e.uid) + " added twice");
      if (e.name.empty() || e.name.find('/') != std::string::npos) return Status::Corrupt("bad file name in index");
      std::string base = e.Base();
      if (base_to_uid_.count(base) != 0) return Status::Corrupt("file " + base + " indexed twice");
      live_[e.uid] = e;
      if (Pending(e)) ++pending_;
      base_to_uid_[base] = e.uid;
      live_ids_[e.id] = e.uid;
      gone_.erase(base);
      if (e.uid >= uid_next_) uid_next_ = e.uid + 1;
      return Status::Ok();
    }
    case RecordType::kMove: {
      auto it = live_.find(r.uid);
      if (it == live_.end()) return Status::Corrupt("move of unknown uid " + std::to_string(r.uid));
      if (BaseOf(r.entry.name) != it->second.Base()) return Status::Corrupt("move changes the base name");
      it->second.dir = r.entry.dir;
      it->second.name = r.entry.name;
      return Status::Ok();
    }
    case RecordType::kExpungeRequest:
    case RecordType::kGone: {
      auto it = live_.find(r.uid);
      if (it == live_.end()) return Status::Ok();  // already gone: idempotent
      if (it->second.id != r.id) return Status::Corrupt("expunge of uid " + std::to_string(r.uid) + " names another message");
      if (Pending(it->second)) --pending_;
      if (r.type == RecordType::kExpungeRequest) {
        it->second.expunge_requested = true;
      } else {
        std::string base = it->second.Base();
        base_to_uid_.erase(base);
        gone_[base] = {r.uid, r.reason};
        if (live_ids_.count(it->second.id) && live_ids_[it->second.id] == r.uid) live_ids_.erase(it->second.id);
        // Only a copy that was really there leaves a tombstone: an Add whose
        // file never appeared must not stop a replay from delivering it.
        if (it->second.confirmed || r.reason == GoneReason::kExpunged) tombstones_[it->second.id] = r.uid;
        retired_uids_.insert(r.uid);
        live_.erase(it);
      }
      return Status::Ok();
    }
    case RecordType::kUidNext:
      if (r.uid > uid_next_) uid_next_ = r.uid;
      return Status::Ok();
    case RecordType::kTombstone:
      tombstones_[r.id] = r.uid;
      if (r.uid != 0) retired_uids_.insert(r.uid);
      if (r.uid >= uid_next_) uid_next_ = r.uid + 1;
      return Status::Ok();
    case RecordType::kConfirm: {
      auto it = live_.find(r.uid);
      if (it != live_.end()) {
        if (Pending(it->second)) --pending_;
        it->second.confirmed = true;
      }
      return Status::Ok();
    }
  }
  return Status::Corrupt("unknown record");
}

bool MailboxIndex::Knows(const MessageId& id) const {
  if (tombstones_.count(id) != 0) return true;
  auto it = live_ids_.find(id);
  return it != live_ids_.end() && live_.at(it->second).confirmed;
}

const IndexEntry* MailboxIndex::FindUid(uint32_t uid) const {
  auto it = live_.find(uid);
  return it == live_.end() ? nullptr : &it->second;
}

const IndexEntry* MailboxIndex::FindBase(const std::string& base) const {
  auto it = base_to_uid_.find(base);
  return it == base_to_uid_.end() ? nullptr : FindUid(it->second);
}

std::optional<std::pair<uint32_t, GoneReason>> MailboxIndex::GoneBase(const std::string& base) const {
  auto it = gone_.find(base);
  if (it == gone_.end()) return std::nullopt;
  return it->second;
}

std::vector<IndexRecord> MailboxIndex::Snapshot(uint64_t created_ms) const {
  std::vector<IndexRecord> out;
  IndexRecord h;
  h.type = RecordType::kHeader;
  h.uidvalidity = uidvalidity_;
  h.created_ms = created_ms;
  out.push_back(h);
  IndexRecord next;
  next.type = RecordType::kUidNext;
  next.uid = uid_next_;
  out.push_back(next);
  for (const auto& [id, uid] : tombstones_) {
    if (id.UnixMillis() + kTombstoneWindowMs < created_ms || live_ids_.count(id)) continue;
    IndexRecord t;
    t.type = RecordType::kTombstone;
    t.uid = uid;
    t.id = id;
    out.push_back(t);
  }
  for (const auto& [uid, e] : live_) {
    IndexRecord add;
    add.type = RecordType::kAdd;
    add.entry = e;
    add.entry.expunge_requested = false;
    add.entry.confirmed = false;
    add.uid = uid;
    out.push_back(add);
    if (e.confirmed) {
      IndexRecord c;
      c.type = RecordType::kConfirm;
      c.uid = uid;
      out.push_back(c);
    }
    if (e.expunge_requested) {
      IndexRecord req;
      req.type = RecordType::kExpungeRequest;
      req.uid = uid;
      req.id = e.id;
      out.push_back(req);
    }
  }
  return out;
}

}  // namespace holdfast
