#include "store/index_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "util/checksum.h"
#include "util/record_log.h"

namespace holdfast {
namespace {

constexpr uint8_t kHeadRecord = 1;
constexpr uint32_t kCheckpointVersion = 1;
// uid u32, id 16, network_size u64, dir u8, 0 u8, name_len u16, name_at u32, name_crc u32.
constexpr size_t kEntrySize = 40;
constexpr size_t kMaxHead = 1024;
constexpr size_t kMaxName = 1024;

uint32_t Le32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t Le64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::string EncodeCheckpoint(const CheckpointHead& head, const std::map<uint32_t, IndexEntry>& live) {
  Encoder entries, names;
  entries.Reserve(live.size() * kEntrySize);
  for (const auto& [uid, e] : live) {
    entries.U32(uid).Bytes(e.id.bytes().data(), 16).U64(e.network_size());
    entries.U8(static_cast<uint8_t>(e.dir)).U8(0);
    entries.U8(static_cast<uint8_t>(e.name.size() & 0xFF)).U8(static_cast<uint8_t>(e.name.size() >> 8));
    entries.U32(static_cast<uint32_t>(names.data().size())).U32(Crc32c(e.name));
    names.Bytes(e.name.data(), e.name.size());
  }
  Encoder h;
  h.U32(kCheckpointVersion).U64(head.journal_inode).U64(head.journal_offset).U32(head.head_crc);
  h.U32(head.uidvalidity).U32(head.uid_next);
  h.U64(head.stamps.new_inode).U64(static_cast<uint64_t>(head.stamps.new_mtime_ns));
  h.U64(head.stamps.cur_inode).U64(static_cast<uint64_t>(head.stamps.cur_mtime_ns)).Str(head.stamps.boot_id);
  h.U32(static_cast<uint32_t>(live.size())).U32(Crc32c(entries.data())).U64(names.data().size());
  std::string out = EncodeRecord(kHeadRecord, h.data());
  out += entries.data();
  out += names.data();
  return out;
}

Result<std::unique_ptr<IndexCheckpoint>> IndexCheckpoint::Load(Fs& fs, const std::string& path) {
  HF_ASSIGN_OR_RETURN(auto file, fs.OpenRead(path));
  std::string first(kMaxHead, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, file->ReadAt(0, first.data(), first.size()));
  first.resize(n);
  ParsedLog parsed = ParseRecordLog(first);  // the entries after the head read as a bad tail
  if (parsed.records.empty() || parsed.records[0].type != kHeadRecord) {
    return Status::Corrupt(path + ": no checkpoint head");
  }
  std::unique_ptr<IndexCheckpoint> c(new IndexCheckpoint());
  CheckpointHead& h = c->head_;
  Decoder d(parsed.records[0].payload);
  const uint32_t version = d.U32();
  h.journal_inode = d.U64();
  h.journal_offset = d.U64();
  h.head_crc = d.U32();
  h.uidvalidity = d.U32();
  h.uid_next = d.U32();
  h.stamps.new_inode = d.U64();
  h.stamps.new_mtime_ns = static_cast<int64_t>(d.U64());
  h.stamps.cur_inode = d.U64();
  h.stamps.cur_mtime_ns = static_cast<int64_t>(d.U64());
  h.stamps.boot_id = d.Str(128);
  const uint32_t count = d.U32();
  const uint32_t entries_crc = d.U32();
  c->names_bytes_ = d.U64();
  if (!d.done() || version != kCheckpointVersion) return Status::Corrupt(path + ": bad checkpoint head");
  const uint64_t entries_at = parsed.records[0].offset + kRecordHeaderSize + parsed.records[0].payload.size();
  HF_ASSIGN_OR_RETURN(uint64_t file_size, file->Size());
  c->count_ = count;
  c->names_at_ = entries_at + uint64_t{count} * kEntrySize;
  if (c->names_at_ + c->names_bytes_ != file_size) return Status::Corrupt(path + ": checkpoint has the wrong size");
  c->entries_.assign(uint64_t{count} * kEntrySize, '\0');
  HF_ASSIGN_OR_RETURN(size_t got, file->ReadAt(entries_at, c->entries_.data(), c->entries_.size()));
  if (got != c->entries_.size() || Crc32c(c->entries_) != entries_crc) {
    return Status::Corrupt(path + ": checkpoint entries damaged");
  }
  // Strictly growing uids: Find's binary search relies on it.
  for (size_t i = 1; i < count; ++i) {
    if (c->UidAt(i) <= c->UidAt(i - 1)) return Status::Corrupt(path + ": checkpoint uids out of order");
  }
  c->file_ = std::move(file);
  return c;
}

uint32_t IndexCheckpoint::UidAt(size_t i) const { return Le32(entries_.data() + i * kEntrySize); }

CheckpointEntry IndexCheckpoint::At(size_t i) const {
  const char* p = entries_.data() + i * kEntrySize;
  CheckpointEntry e;
  e.uid = Le32(p);
  std::array<uint8_t, 16> id;
  std::memcpy(id.data(), p + 4, 16);
  e.id = MessageId::FromBytes(id);
  e.network_size = Le64(p + 20);
  e.dir = p[28] == 1 ? MaildirDir::kCur : MaildirDir::kNew;
  return e;
}

std::optional<size_t> IndexCheckpoint::Find(uint32_t uid) const {
  size_t lo = 0, hi = count_;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (UidAt(mid) < uid) lo = mid + 1;
    else hi = mid;
  }
  if (lo < count_ && UidAt(lo) == uid) return lo;
  return std::nullopt;
}

Result<std::string> IndexCheckpoint::Name(size_t i) const {
  const char* p = entries_.data() + i * kEntrySize;
  const size_t len = static_cast<uint8_t>(p[30]) | (size_t{static_cast<uint8_t>(p[31])} << 8);
  const uint64_t at = Le32(p + 32);
  if (len == 0 || len > kMaxName || at + len > names_bytes_) return Status::Corrupt("checkpoint name out of range");
  std::string name(len, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, file_->ReadAt(names_at_ + at, name.data(), len));
  if (n != len || Crc32c(name) != Le32(p + 36) || name.find('/') != std::string::npos) {
    return Status::Corrupt("checkpoint name damaged");
  }
  return name;
}

}  // namespace holdfast
