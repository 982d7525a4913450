#include "store/mailbox.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "store/maildir_name.h"
#include "util/record_log.h"

namespace holdfast {
namespace {

constexpr size_t kReadChunk = 1 << 16;
// A tmp/ file this young may belong to a writer that has created it but not
// locked it yet; it is left for a later recovery (real clock only: SimFs
// mtimes are small logical counters and always count as old).
constexpr int64_t kTmpGraceNs = 10LL * 1000 * 1000 * 1000;
// Extra directory passes looking for a message missing from the first one:
// a concurrent rename can hide it from a readdir pass.
constexpr int kMissingRetries = 3;
// A pass proves absence only if new/ and cur/ did not change while it ran:
// their mtimes equal before and after, and older than the pass's start by
// more than the kernel's timestamp granularity (a jiffy, at most 10 ms), so
// that any change during the pass would have moved them.
constexpr int64_t kMtimeGranularityNs = 20LL * 1000 * 1000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

struct OnDisk {
  MaildirDir dir;
  std::string name;
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

Result<std::pair<int64_t, int64_t>> DirMtimes(Fs& fs, const std::string& maildir) {
  HF_ASSIGN_OR_RETURN(FileInfo n, fs.Stat(JoinPath(maildir, "new")));
  HF_ASSIGN_OR_RETURN(FileInfo c, fs.Stat(JoinPath(maildir, "cur")));
  return std::make_pair(n.mtime_ns, c.mtime_ns);
}

// One readdir pass over new/ and cur/, keyed by base name. A base in both
// (another tool's link+unlink move, interrupted) counts as in cur/.
Result<std::unordered_map<std::string, OnDisk>> ScanDirs(Fs& fs, const std::string& maildir) {
  std::unordered_map<std::string, OnDisk> found;
  for (MaildirDir d : {MaildirDir::kNew, MaildirDir::kCur}) {
    HF_ASSIGN_OR_RETURN(auto names, fs.ReadDir(JoinPath(maildir, SubdirName(d))));
    for (auto& n : names) {
      auto parsed = ParseMaildirName(n);
      if (!parsed) continue;
      found[parsed->base] = OnDisk{d, std::move(n)};
    }
  }
  return found;
}

struct FileDigest {
  uint64_t size = 0;
  uint64_t vsize = 0;
  uint8_t eol_added = 0;
  std::array<uint8_t, 32> sha256{};
};

Result<FileDigest> DigestFile(Fs& fs, const std::string& path) {
  HF_ASSIGN_OR_RETURN(auto file, fs.OpenRead(path));
  FileDigest d;
  Sha256 sha;
  std::string buf(kReadChunk, '\0');
  bool last_cr = false;
  char last_char = '\n';
  for (;;) {
    HF_ASSIGN_OR_RETURN(size_t n, file->ReadAt(d.size, buf.data(), buf.size()));
    if (n == 0) break;
    std::string_view chunk(buf.data(), n);
    sha.Update(chunk);
    for (char c : chunk) {
      if (c == '\n' && !last_cr) ++d.vsize;
      last_cr = (c == '\r');
    }
    last_char = chunk.back();
    d.size += n;
  }
  d.vsize += d.size;
  d.eol_added = EolAdded(d.size, last_char);
  d.sha256 = sha.Finish();
  return d;
}

// The digests of many files at once. With a cold page cache each file is a
// disk read, and a disk serves several reads at a time far faster than one
// after another: the first login after an index was lost reads every file
// (a cold login+STAT). A few files are not worth the threads.
std::vector<Result<FileDigest>> DigestFiles(Fs& fs, const std::vector<std::string>& paths) {
  constexpr size_t kMinForThreads = 64, kThreads = 16;
  std::vector<Result<FileDigest>> out(paths.size(), Result<FileDigest>(Status::Io("not read")));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < paths.size(); i = next++) out[i] = DigestFile(fs, paths[i]);
  };
  if (paths.size() < kMinForThreads) {
    work();
    return out;
  }
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  return out;
}

IndexRecord MoveRecord(uint32_t uid, const OnDisk& where) {
  IndexRecord r;
  r.type = RecordType::kMove;
  r.uid = uid;
  r.entry.dir = where.dir;
  r.entry.name = where.name;
  return r;
}

IndexRecord GoneRecord(const IndexEntry& e, GoneReason why) {
  IndexRecord r;
  r.type = RecordType::kGone;
  r.uid = e.uid;
  r.id = e.id;
  r.reason = why;
  return r;
}

}  // namespace

// ---------------------------------------------------------------- Delivery

Delivery::Delivery(Mailbox* box, MessageId id, std::string tmp_name, std::unique_ptr<File> file)
    : box_(box), id_(id), tmp_name_(std::move(tmp_name)), file_(std::move(file)) {}

Delivery::~Delivery() { Abort(); }

Status Delivery::Write(std::string_view chunk) {
  if (done_) return Status::Invalid("delivery already finished");
  Status s = file_->Append(chunk);
  if (!s.ok()) {
    Abort();
    return s;
  }
  sha_.Update(chunk);
  // Bare LFs (an LF not after a CR), found with memchr: this runs over every byte delivered.
  for (size_t at = 0; at < chunk.size();) {
    const void* lf = std::memchr(chunk.data() + at, '\n', chunk.size() - at);
    if (lf == nullptr) break;
    size_t i = static_cast<size_t>(static_cast<const char*>(lf) - chunk.data());
    if (i == 0 ? !last_was_cr_ : chunk[i - 1] != '\r') ++bare_lf_;
    at = i + 1;
  }
  if (!chunk.empty()) last_was_cr_ = chunk.back() == '\r';
  size_ += chunk.size();
  if (!chunk.empty()) last_char_ = chunk.back();
  return Status::Ok();
}

void Delivery::SetPlacement(MaildirDir dir, std::string_view flags) {
  dir_ = dir;
  flags_.clear();
  if (dir != MaildirDir::kCur) return;  // new/ names carry no info part
  for (char c = 'A'; c <= 'Z'; ++c) {
    if (flags.find(c) != std::string_view::npos) flags_ += c;
  }
}

Result<DeliveredMessage> Delivery::Commit() {
  if (done_) return Status::Invalid("delivery already finished");
  auto r = std::move(box_->CommitAll({this})[0]);
  if (!r.ok()) Abort();
  done_ = true;
  file_.reset();
  return r;
}

void Delivery::Abort() {
  if (done_) return;
  done_ = true;
  file_.reset();
  // Best effort: if this unlink is lost, recovery removes the leftover.
  (void)box_->fs_.Unlink(box_->Path("tmp/" + tmp_name_));
}

// ----------------------------------------------------------------- Mailbox

Mailbox::Mailbox(Fs& fs, std::string dir, MailboxOptions opts)
    : fs_(fs), dir_(std::move(dir)), opts_(std::move(opts)) {}

Status Mailbox::Create(Fs& fs, const std::string& dir) {
  bool made = false;
  Status s = fs.MkDir(dir, 0700);
  if (s.ok()) made = true;
  else if (s.kind() != Status::Kind::kExists) return s;
  for (const char* sub : {"tmp", "new", "cur"}) {
    Status m = fs.MkDir(JoinPath(dir, sub), 0700);
    if (m.ok()) made = true;
    else if (m.kind() != Status::Kind::kExists) return m;
  }
  if (!made) return Status::Ok();
  // The subdirectories' names live in dir; dir's name lives in its parent.
  HF_RETURN_IF_ERROR(fs.SyncDir(dir));
  return fs.SyncDir(DirName(dir));
}

size_t Mailbox::MemoryEstimate() const {
  const size_t per_message = (state_.live().size() + view_added_.size()) * kBytesPerMessage;
  return kFixedBytes + (view_ ? view_->bytes() : 0) + per_message;
}

Status Mailbox::CheckMaildir(Fs& fs, const std::string& dir) {
  for (const char* sub : {"tmp", "new", "cur"}) {
    auto info = fs.Stat(JoinPath(dir, sub));
    if (!info.ok()) return Status::NotFound(dir + " is not a Maildir: " + info.status().message());
    if (!info->is_dir) return Status::Invalid(JoinPath(dir, sub) + " is not a directory");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Mailbox>> Mailbox::Open(Fs& fs, const std::string& dir, MailboxOptions opts) {
  HF_RETURN_IF_ERROR(CheckMaildir(fs, dir));
  std::unique_ptr<Mailbox> box(new Mailbox(fs, dir, std::move(opts)));
  HF_ASSIGN_OR_RETURN(Lock lock, box->LockAndLoad());
  HF_RETURN_IF_ERROR(box->RecoverTmp());
  HF_RETURN_IF_ERROR(box->FinishRequestedExpunges());
  return box;
}

Result<std::unique_ptr<Mailbox>> Mailbox::OpenForDelivery(Fs& fs, const std::string& dir, MailboxOptions opts) {
  HF_RETURN_IF_ERROR(CheckMaildir(fs, dir));
  std::unique_ptr<Mailbox> box(new Mailbox(fs, dir, std::move(opts)));
  HF_ASSIGN_OR_RETURN(Lock lock, box->fs_.LockFile(box->Path(kLockFile), box->opts_.lock_timeout));
  box->tail_only_ = box->AdoptSummary();
  HF_RETURN_IF_ERROR(box->LoadJournal());
  HF_RETURN_IF_ERROR(box->RecoverTmp());
  if (!box->tail_only_) HF_RETURN_IF_ERROR(box->FinishRequestedExpunges());
  return box;
}

Result<std::unique_ptr<Mailbox>> Mailbox::OpenForListing(Fs& fs, const std::string& dir, MailboxOptions opts) {
  HF_RETURN_IF_ERROR(CheckMaildir(fs, dir));
  std::unique_ptr<Mailbox> box(new Mailbox(fs, dir, std::move(opts)));
  HF_ASSIGN_OR_RETURN(Lock lock, box->fs_.LockFile(box->Path(kLockFile), box->opts_.lock_timeout));
  (void)box->AdoptCheckpoint();
  HF_RETURN_IF_ERROR(box->LoadJournal());
  HF_RETURN_IF_ERROR(box->RecoverTmp());
  // A view holds no pending expunge (a checkpoint is written without one, a
  // later ExpungeRequest ends the view): without one there is nothing to finish.
  if (!box->view_) HF_RETURN_IF_ERROR(box->FinishRequestedExpunges());
  return box;
}

Result<Mailbox::Lock> Mailbox::LockAndLoad() {
  HF_ASSIGN_OR_RETURN(Lock lock, fs_.LockFile(Path(kLockFile), opts_.lock_timeout));
  HF_RETURN_IF_ERROR(LoadJournal());
  return lock;
}

// ----------------------------------------------------- the index summary
//
// holdfast.index.summary is one record-log frame (type 1): version:u32 (=1)
// journal_inode:u64 journal_offset:u64 head_crc:u32 uid_next:u32. It says
// "the journal with this inode, whose first frame has this CRC, held records
// up to this offset, durably, and the next UID then was uid_next". Written
// after a synced append, by rename, without fsync: lost, torn or stale, it is
// refused or only makes the reader replay more of the journal.

namespace {
constexpr uint8_t kSummaryRecord = 1;
constexpr uint32_t kSummaryVersion = 1;
constexpr size_t kHeaderFrameSize = 29;  // frame header 13 + Header payload 16
}  // namespace

bool Mailbox::AdoptSummary() {
  auto bytes = fs_.ReadFile(Path(kSummaryFile));
  if (!bytes.ok() || bytes->size() > 4096) return false;
  ParsedLog parsed = ParseRecordLog(*bytes);
  if (parsed.records.size() != 1 || parsed.tail != ParsedLog::Tail::kClean) return false;
  if (parsed.records[0].type != kSummaryRecord) return false;
  Decoder d(parsed.records[0].payload);
  const uint32_t version = d.U32();
  const uint64_t inode = d.U64();
  const uint64_t offset = d.U64();
  const uint32_t head_crc = d.U32();
  const uint32_t uid_next = d.U32();
  if (!d.done() || version != kSummaryVersion || offset < kHeaderFrameSize || uid_next == 0) return false;
  auto journal = OpenJournalMatching(inode, offset, head_crc);
  if (!journal.ok()) return false;
  journal_ = std::move(journal).value();
  journal_inode_ = inode;
  journal_offset_ = offset;
  head_crc_inode_ = inode;
  head_crc_ = head_crc;
  tail_uid_next_ = uid_next;
  return true;
}

Result<std::unique_ptr<File>> Mailbox::OpenJournalMatching(uint64_t inode, uint64_t offset, uint32_t head_crc) {
  HF_ASSIGN_OR_RETURN(FileInfo info, fs_.Stat(Path(kIndexFile)));
  if (info.inode != inode || info.size < offset) return Status::NotFound("another journal");
  HF_ASSIGN_OR_RETURN(auto journal, fs_.OpenAppend(Path(kIndexFile)));
  // A compaction writes a new Header (its own created_ms): a journal that
  // reuses the old inode number still has another first frame.
  std::string head(kHeaderFrameSize, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, journal->ReadAt(0, head.data(), head.size()));
  if (n != head.size() || Crc32c(head) != head_crc) return Status::NotFound("another journal");
  return journal;
}

Result<uint32_t> Mailbox::HeadCrc() {
  if (head_crc_inode_ != journal_inode_) {
    std::string head(kHeaderFrameSize, '\0');
    HF_ASSIGN_OR_RETURN(size_t n, journal_->ReadAt(0, head.data(), head.size()));
    if (n != head.size()) return Status::Corrupt("journal shorter than its header");
    head_crc_ = Crc32c(head);
    head_crc_inode_ = journal_inode_;
  }
  return head_crc_;
}

Status Mailbox::WriteHintFile(const char* name, std::string_view bytes) {
  // Written whole under a temporary name and renamed, never fsynced: a hint
  // that a crash may lose or leave stale, and every reader checks it first.
  const std::string tmp = Path(std::string(name) + ".new");
  (void)fs_.Unlink(tmp);  // a leftover; we hold the lock
  HF_ASSIGN_OR_RETURN(auto file, fs_.CreateExclusive(tmp, 0600));
  Status s = file->Append(bytes);
  file.reset();
  if (s.ok()) s = fs_.Rename(tmp, Path(name));
  if (!s.ok()) (void)fs_.Unlink(tmp);
  return s;
}

void Mailbox::WriteSummary() {
  if (journal_inode_ == 0 || journal_inode_ != synced_inode_ || journal_offset_ != synced_offset_) return;
  auto head_crc = HeadCrc();
  if (!head_crc.ok()) return;
  Encoder e;
  e.U32(kSummaryVersion).U64(journal_inode_).U64(journal_offset_).U32(*head_crc).U32(NextUid());
  (void)WriteHintFile(kSummaryFile, EncodeRecord(kSummaryRecord, e.data()));
}

void Mailbox::LoadWholeJournalNextTime() {
  if (!tail_only_ && !view_) return;
  tail_only_ = false;
  view_.reset();
  view_added_.clear();
  journal_inode_ = 0;  // LoadJournal starts over from offset 0
  journal_offset_ = 0;
  state_ = MailboxIndex();
}

Status Mailbox::LoadJournalTail() {
  auto info = fs_.Stat(Path(kIndexFile));
  if (!info.ok() || info->inode != journal_inode_ || info->size < journal_offset_) {
    LoadWholeJournalNextTime();  // rewritten or gone since: the whole way
    return LoadJournal();
  }
  if (info->size == journal_offset_) return Status::Ok();
  std::string tail(info->size - journal_offset_, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, journal_->ReadAt(journal_offset_, tail.data(), tail.size()));
  tail.resize(n);
  ParsedLog parsed = ParseRecordLog(tail);
  uint32_t next = tail_uid_next_;
  bool plain = parsed.tail != ParsedLog::Tail::kCorrupt;
  for (const LogRecord& rec : parsed.records) {
    auto r = IndexRecord::Decode(rec.type, rec.payload);
    if (!r.ok() || r->type == RecordType::kHeader) {
      plain = false;
      break;
    }
    if (r->type == RecordType::kAdd) next = std::max(next, r->entry.uid + 1);
    if (r->type == RecordType::kUidNext) next = std::max(next, r->uid);
  }
  if (!plain) {
    // Damage is the whole load's business (it salvages and rebuilds).
    LoadWholeJournalNextTime();
    return LoadJournal();
  }
  tail_uid_next_ = next;
  journal_offset_ += parsed.valid_end;
  if (parsed.tail == ParsedLog::Tail::kTorn) return CutTornTail(n - parsed.valid_end);
  return Status::Ok();
}

// ------------------------------------------------- the index checkpoint
//
// holdfast.index.checkpoint (store/index_checkpoint.h, docs/storage.md):
// the listing as of one journal offset, with the stamps of new/ and cur/
// from the quiet scan that matched it. Lost, torn, stale, from another boot
// or contradicted by the directories, it only sends the listing the whole way.

namespace {
// A view takes at most this many Adds after its checkpoint (or an eighth of
// it) before the whole load, whose listing writes a new one, is cheaper.
constexpr size_t kViewMaxAdded = 4096;
// A full listing rewrites a checkpoint this far behind the journal even if
// the directories did not move.
constexpr uint64_t kCheckpointSlack = 64 << 10;
}  // namespace

Result<DirStamps> Mailbox::StampDirs() {
  HF_ASSIGN_OR_RETURN(FileInfo n, fs_.Stat(Path("new")));
  HF_ASSIGN_OR_RETURN(FileInfo c, fs_.Stat(Path("cur")));
  return DirStamps{n.inode, n.mtime_ns, c.inode, c.mtime_ns, fs_.BootId()};
}

bool Mailbox::AdoptCheckpoint() {
  auto loaded = IndexCheckpoint::Load(fs_, Path(kCheckpointFile));
  if (!loaded.ok()) return false;
  const CheckpointHead& h = (*loaded)->head();
  // Directory stamps of another boot prove nothing (Fs::BootId).
  if (h.stamps.boot_id.empty() || h.stamps.boot_id != fs_.BootId()) return false;
  if (h.uidvalidity == 0 || h.journal_offset < kHeaderFrameSize) return false;
  const size_t n = (*loaded)->size();
  if (n > 0 && (*loaded)->At(n - 1).uid >= h.uid_next) return false;
  auto journal = OpenJournalMatching(h.journal_inode, h.journal_offset, h.head_crc);
  if (!journal.ok()) return false;
  journal_ = std::move(journal).value();
  journal_inode_ = h.journal_inode;
  journal_offset_ = h.journal_offset;
  head_crc_inode_ = h.journal_inode;
  head_crc_ = h.head_crc;
  view_uid_next_ = h.uid_next;
  checkpoint_known_ = h;
  view_ = std::move(loaded).value();
  return true;
}

Status Mailbox::LoadViewTail() {
  auto whole = [this] {
    LoadWholeJournalNextTime();
    return LoadJournal();
  };
  auto info = fs_.Stat(Path(kIndexFile));
  if (!info.ok() || info->inode != journal_inode_ || info->size < journal_offset_) return whole();
  if (info->size == journal_offset_) return Status::Ok();
  std::string tail(info->size - journal_offset_, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, journal_->ReadAt(journal_offset_, tail.data(), tail.size()));
  tail.resize(n);
  ParsedLog parsed = ParseRecordLog(tail);
  if (parsed.tail == ParsedLog::Tail::kCorrupt) return whole();  // the whole load salvages
  std::vector<IndexEntry> added;
  uint32_t next = view_uid_next_;
  auto find = [&](uint32_t uid) -> IndexEntry* {
    for (auto* v : {&added, &view_added_}) {
      for (auto& e : *v) {
        if (e.uid == uid) return &e;
      }
    }
    return nullptr;
  };
  for (const LogRecord& rec : parsed.records) {
    auto r = IndexRecord::Decode(rec.type, rec.payload);
    if (!r.ok()) return whole();
    switch (r->type) {
      case RecordType::kAdd:
        // Deliveries' Adds only: above every UID so far, so never a second
        // copy of a uid; anything else (a scan's re-adds) is the whole load's.
        if (r->entry.uid < next || r->entry.name.empty() || r->entry.name.find('/') != std::string::npos) {
          return whole();
        }
        next = r->entry.uid + 1;
        added.push_back(std::move(r->entry));
        break;
      case RecordType::kConfirm:
        if (IndexEntry* e = find(r->uid)) e->confirmed = true;  // checkpoint entries are confirmed already
        break;
      case RecordType::kUidNext:
        next = std::max(next, r->uid);
        break;
      default:  // a rename, removal or expunge: the whole load and scan sort it out
        return whole();
    }
  }
  if (view_added_.size() + added.size() > std::max(kViewMaxAdded, view_->size() / 8)) return whole();
  for (auto& e : added) view_added_.push_back(std::move(e));
  view_uid_next_ = next;
  journal_offset_ += parsed.valid_end;
  if (parsed.tail == ParsedLog::Tail::kTorn) return CutTornTail(n - parsed.valid_end);
  return Status::Ok();
}

Result<bool> Mailbox::ListFromView(std::vector<MessageRef>* out) {
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  if (!view_) return false;
  auto leave = [this] {
    LoadWholeJournalNextTime();
    return false;
  };
  const DirStamps& was = view_->head().stamps;
  HF_ASSIGN_OR_RETURN(DirStamps now, StampDirs());
  // cur/ as the checkpoint's scan left it: nothing created, renamed or
  // removed there since (each moves its mtime past a quiet stamp).
  if (now.cur_inode != was.cur_inode || now.cur_mtime_ns != was.cur_mtime_ns) return leave();
  bool scan_new = now.new_inode != was.new_inode || now.new_mtime_ns != was.new_mtime_ns;
  for (const IndexEntry& e : view_added_) {
    if (e.dir == MaildirDir::kCur) return leave();  // cur/ is only ever read by the whole scan
    scan_new = true;  // an Add is provisional until a scan sees its file
  }
  if (scan_new) {
    // new/ must hold exactly the view's new/ messages, under their names;
    // any difference, or new/ changing during the pass, is the whole scan's.
    HF_ASSIGN_OR_RETURN(auto names, fs_.ReadDir(Path("new")));
    HF_ASSIGN_OR_RETURN(DirStamps after, StampDirs());
    if (after != now) return leave();
    std::unordered_map<std::string, std::string> expect;  // base -> name
    auto want = [&expect](std::string name) {
      std::string base = name.substr(0, name.find(':'));
      return expect.emplace(std::move(base), std::move(name)).second;
    };
    for (size_t i = 0; i < view_->size(); ++i) {
      if (view_->At(i).dir != MaildirDir::kNew) continue;
      auto name = view_->Name(i);
      if (!name.ok() || !want(std::move(name).value())) return leave();
    }
    for (const IndexEntry& e : view_added_) {
      if (!want(e.name)) return leave();
    }
    size_t seen = 0;
    for (const std::string& n : names) {
      auto parsed = ParseMaildirName(n);
      if (!parsed) continue;
      auto it = expect.find(parsed->base);
      if (it == expect.end() || it->second != n) return leave();
      ++seen;
    }
    if (seen != expect.size()) return leave();
    std::vector<IndexRecord> confirms;
    for (const IndexEntry& e : view_added_) {
      if (e.confirmed) continue;
      IndexRecord c;
      c.type = RecordType::kConfirm;
      c.uid = e.uid;
      confirms.push_back(c);
    }
    // Synced before the listing goes out, as CatchUpWithDirectory's records.
    Status s = Log(confirms, true);
    if (!s.ok()) return leave();
  }
  out->reserve(view_->size() + view_added_.size());
  for (size_t i = 0; i < view_->size(); ++i) {
    const CheckpointEntry c = view_->At(i);
    out->push_back(MessageRef{c.uid, c.id, c.network_size});
  }
  for (const IndexEntry& e : view_added_) out->push_back(MessageRef{e.uid, e.id, e.network_size()});
  return true;
}

void Mailbox::MaybeWriteCheckpoint() {
  if (tail_only_ || view_ || !scanned_at_ || !state_.AllConfirmed()) return;
  if (state_.live().size() < opts_.checkpoint_min_messages) return;
  // Only what is durable in the journal: a crash never leaves a checkpoint
  // ahead of it (as for the summary).
  if (journal_inode_ == 0 || journal_inode_ != synced_inode_ || journal_offset_ != synced_offset_) return;
  auto stamps = StampDirs();
  if (!stamps.ok() || stamps->boot_id.empty()) return;
  // The directories as the quiet scan saw them, or the stamps would vouch for more.
  if (std::make_pair(stamps->new_mtime_ns, stamps->cur_mtime_ns) != *scanned_at_) return;
  if (checkpoint_known_ && checkpoint_known_->journal_inode == journal_inode_ &&
      checkpoint_known_->stamps == *stamps && journal_offset_ - checkpoint_known_->journal_offset < kCheckpointSlack) {
    return;
  }
  for (const auto& [uid, e] : state_.live()) {
    if (e.expunge_requested) return;  // recovery's, in the next full open
  }
  auto head_crc = HeadCrc();
  if (!head_crc.ok()) return;
  CheckpointHead h;
  h.journal_inode = journal_inode_;
  h.journal_offset = journal_offset_;
  h.head_crc = *head_crc;
  h.uidvalidity = state_.uidvalidity();
  h.uid_next = std::max(state_.uid_next(), uid_floor_ + 1);
  h.stamps = *stamps;
  // After a power loss its boot id no longer matches, and a torn one fails its CRCs.
  if (WriteHintFile(kCheckpointFile, EncodeCheckpoint(h, state_.live())).ok()) checkpoint_known_ = h;
}

Status Mailbox::CutTornTail(uint64_t torn_bytes) {
  // The last append was cut by a crash: it was never acknowledged.
  HF_RETURN_IF_ERROR(journal_->Truncate(journal_offset_));
  HF_RETURN_IF_ERROR(journal_->SyncData());
  synced_inode_ = journal_inode_;
  synced_offset_ = journal_offset_;
  recovery_log_.push_back("dropped a torn index tail of " + std::to_string(torn_bytes) + " bytes");
  return Status::Ok();
}

// Catches state_ up with the journal; repairs a torn tail, rebuilds a
// missing or damaged journal. Caller holds the lock, so no one is appending.
Status Mailbox::LoadJournal() {
  if (tail_only_) return LoadJournalTail();
  if (view_) return LoadViewTail();
  const std::string path = Path(kIndexFile);
  auto info = fs_.Stat(path);
  if (!info.ok() && info.status().kind() == Status::Kind::kNotFound) {
    return RebuildFrom(MailboxIndex(), journal_inode_ == 0 && state_.live().empty()
                                           ? "no index yet: built from the Maildir"
                                           : "index file missing: rebuilt from the Maildir");
  }
  if (!info.ok()) return info.status();
  if (info->inode != journal_inode_ || info->size < journal_offset_) {
    // Another process compacted or rebuilt it: start over from the new file.
    HF_ASSIGN_OR_RETURN(journal_, fs_.OpenAppend(path));
    journal_inode_ = info->inode;
    journal_offset_ = 0;
    state_ = MailboxIndex();
  }
  if (info->size == journal_offset_) return Status::Ok();

  std::string tail(info->size - journal_offset_, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, journal_->ReadAt(journal_offset_, tail.data(), tail.size()));
  tail.resize(n);
  ParsedLog parsed = ParseRecordLog(tail);
  for (const LogRecord& rec : parsed.records) {
    auto r = IndexRecord::Decode(rec.type, rec.payload);
    Status s = r.ok() ? state_.Apply(*r) : r.status();
    if (!s.ok()) return RebuildFrom(state_, "index record at offset " +
                                                std::to_string(journal_offset_ + rec.offset) + " is bad (" +
                                                s.message() + "): rebuilt");
  }
  if (parsed.tail == ParsedLog::Tail::kCorrupt) {
    MailboxIndex salvaged = state_;
    for (const LogRecord& rec : parsed.salvaged) {
      auto r = IndexRecord::Decode(rec.type, rec.payload);
      if (r.ok()) (void)salvaged.Apply(*r);  // keep what still fits
    }
    return RebuildFrom(std::move(salvaged), "index damaged at offset " +
                                                std::to_string(journal_offset_ + parsed.valid_end) + ": rebuilt");
  }
  if (!state_.has_header()) return RebuildFrom(MailboxIndex(), "index has no header: rebuilt");
  journal_offset_ += parsed.valid_end;
  if (parsed.tail == ParsedLog::Tail::kTorn) return CutTornTail(n - parsed.valid_end);
  return Status::Ok();
}

Status Mailbox::RebuildFrom(MailboxIndex salvaged, const std::string& why) {
  if (!salvaged.has_header()) {
    // A new UIDVALIDITY: nothing proves the old UIDs' meaning survived.
    IndexRecord h;
    h.type = RecordType::kHeader;
    h.uidvalidity = static_cast<uint32_t>(std::max<int64_t>(1, NowMs() / 1000));
    MailboxIndex fresh;
    HF_RETURN_IF_ERROR(fresh.Apply(h));
    for (const auto& rec : salvaged.Snapshot(0)) {
      if (rec.type != RecordType::kHeader) (void)fresh.Apply(rec);
    }
    salvaged = std::move(fresh);
  }
  std::vector<IndexRecord> changes;
  HF_RETURN_IF_ERROR(SyncWithDirectory(salvaged, &changes, nullptr));
  HF_RETURN_IF_ERROR(WriteNewJournal(salvaged));
  state_ = std::move(salvaged);
  recovery_log_.push_back(why + " (" + std::to_string(state_.live().size()) + " messages)");
  return Status::Ok();
}

// Writes `state` as a fresh journal and renames it over the old one: after a
// crash either the old or the new journal is there, whole.
Status Mailbox::WriteNewJournal(const MailboxIndex& state) {
  const std::string tmp = Path(std::string(kIndexFile) + ".new");
  Status s = fs_.Unlink(tmp);  // a leftover of an interrupted rewrite; we hold the lock
  if (!s.ok() && s.kind() != Status::Kind::kNotFound) return s;
  std::string bytes;
  for (const auto& rec : state.Snapshot(static_cast<uint64_t>(NowMs()))) bytes += rec.Encode();
  {
    HF_ASSIGN_OR_RETURN(auto file, fs_.CreateExclusive(tmp, 0600));
    HF_RETURN_IF_ERROR(file->Append(bytes));
    HF_RETURN_IF_ERROR(file->SyncData());
  }
  HF_RETURN_IF_ERROR(fs_.Rename(tmp, Path(kIndexFile)));
  HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
  HF_ASSIGN_OR_RETURN(journal_, fs_.OpenAppend(Path(kIndexFile)));
  HF_ASSIGN_OR_RETURN(FileInfo info, fs_.Stat(Path(kIndexFile)));
  journal_inode_ = info.inode;
  journal_offset_ = bytes.size();
  synced_inode_ = journal_inode_;  // synced before the rename
  synced_offset_ = journal_offset_;
  return Status::Ok();
}

Status Mailbox::SyncJournal() {
  // Nothing read or written since the last sync of this file: it is durable.
  if (journal_inode_ == synced_inode_ && journal_offset_ == synced_offset_) return Status::Ok();
  HF_RETURN_IF_ERROR(journal_->SyncData());
  synced_inode_ = journal_inode_;
  synced_offset_ = journal_offset_;
  return Status::Ok();
}

Status Mailbox::Log(const std::vector<IndexRecord>& records, bool sync) {
  // With no records, a sync still makes durable what this process read from
  // a writer that crashed before its own sync (it acts on those records).
  if (records.empty()) return sync ? SyncJournal() : Status::Ok();
  std::string bytes;
  for (const auto& r : records) bytes += r.Encode();
  Status s = journal_->Append(bytes);
  if (!s.ok()) {
    // A partial record must not stay in front of later appends (it would
    // read as damage, not as a torn tail): cut it, and reload next time.
    (void)journal_->Truncate(journal_offset_);
    journal_inode_ = 0;
    return s;
  }
  journal_offset_ += bytes.size();
  if (tail_only_) {
    // Only CommitAll logs in this mode: Add records.
    for (const auto& r : records) {
      if (r.type == RecordType::kAdd) tail_uid_next_ = std::max(tail_uid_next_, r.entry.uid + 1);
    }
  } else if (view_) {
    // Only ListFromView logs in this mode: Confirms of the Adds after the checkpoint.
    for (const auto& r : records) {
      for (auto& e : view_added_) {
        if (r.type == RecordType::kConfirm && e.uid == r.uid) e.confirmed = true;
      }
    }
  } else {
    for (const auto& r : records) HF_RETURN_IF_ERROR(state_.Apply(r));
  }
  return sync ? SyncJournal() : Status::Ok();
}

// Brings `state` in step with new/ and cur/: renames and flag changes by
// other tools become kMove, files removed by them kGone, files the index does
// not know kAdd. Records are applied to `state` and returned in `changes`.
Status Mailbox::SyncWithDirectory(MailboxIndex& state, std::vector<IndexRecord>* changes, DirStamp* quiet_at) {
  auto emit = [&](IndexRecord r) -> Status {
    HF_RETURN_IF_ERROR(state.Apply(r));
    changes->push_back(std::move(r));
    return Status::Ok();
  };
  // Scans, and says whether the scan was a consistent snapshot (see
  // kMtimeGranularityNs): only such a pass may prove a file gone.
  auto scan = [this](bool* quiet) -> Result<std::unordered_map<std::string, OnDisk>> {
    const int64_t start = NowNs();
    HF_ASSIGN_OR_RETURN(auto before, DirMtimes(fs_, dir_));
    HF_ASSIGN_OR_RETURN(auto found, ScanDirs(fs_, dir_));
    HF_ASSIGN_OR_RETURN(auto after, DirMtimes(fs_, dir_));
    *quiet = before == after && start - std::max(before.first, before.second) > kMtimeGranularityNs;
    return found;
  };
  bool quiet = false;
  const int64_t first_start = NowNs();
  HF_ASSIGN_OR_RETURN(auto found, scan(&quiet));
  bool proven = quiet;
  if (quiet && quiet_at != nullptr) {
    // The first pass saw the directories as they were at these mtimes.
    auto stamp = DirMtimes(fs_, dir_);
    if (stamp.ok() && first_start - std::max(stamp->first, stamp->second) > kMtimeGranularityNs) *quiet_at = *stamp;
  }

  std::vector<uint32_t> missing, confirmed;
  std::vector<std::pair<uint32_t, OnDisk>> moved;
  for (const auto& [uid, e] : state.live()) {
    auto it = found.find(e.Base());
    if (it == found.end()) {
      if (!e.expunge_requested) missing.push_back(uid);
      continue;
    }
    if (it->second.dir != e.dir || it->second.name != e.name) moved.emplace_back(uid, it->second);
    if (!e.confirmed) confirmed.push_back(uid);
    found.erase(it);
  }
  // A rename racing with readdir can hide a file from one pass; look again
  // before believing it is gone.
  auto look_again = [&]() -> Status {
    HF_ASSIGN_OR_RETURN(auto again, scan(&quiet));
    proven = proven || quiet;
    std::vector<uint32_t> still;
    for (uint32_t uid : missing) {
      const IndexEntry& e = *state.FindUid(uid);
      auto it = again.find(e.Base());
      if (it == again.end()) {
        still.push_back(uid);
      } else {
        if (it->second.dir != e.dir || it->second.name != e.name) moved.emplace_back(uid, it->second);
        if (!e.confirmed) confirmed.push_back(uid);
      }
    }
    missing.swap(still);
    return Status::Ok();
  };
  for (int pass = 0; pass < kMissingRetries && !missing.empty(); ++pass) HF_RETURN_IF_ERROR(look_again());
  if (!missing.empty() && !proven) {
    // Typically one removal a moment ago: once the timestamp granularity has
    // passed, one more pass can prove it. A busy directory stays unproven.
    std::this_thread::sleep_for(std::chrono::nanoseconds(kMtimeGranularityNs + 5000000));
    HF_RETURN_IF_ERROR(look_again());
  }
  for (auto& [uid, where] : moved) HF_RETURN_IF_ERROR(emit(MoveRecord(uid, where)));
  for (uint32_t uid : confirmed) {
    IndexRecord c;
    c.type = RecordType::kConfirm;
    c.uid = uid;
    HF_RETURN_IF_ERROR(emit(std::move(c)));
  }
  // Without a quiet pass the directories were changing all along: keep the
  // missing entries (under their last known names) rather than risk dropping
  // a message that exists. A listing may then name a file another tool has
  // just removed, but it never omits one that is there (invariant 6).
  if (proven) {
    for (uint32_t uid : missing) HF_RETURN_IF_ERROR(emit(GoneRecord(*state.FindUid(uid), GoneReason::kVanished)));
  }

  // Files the index does not know. holdfast's own names carry their UID:
  // keep it when it is above every UID ever handed out (index lost or behind).
  struct Newcomer {
    MaildirName parsed;
    OnDisk where;
  };
  std::vector<Newcomer> newcomers;
  for (auto& [base, where] : found) newcomers.push_back({*ParseMaildirName(where.name), where});
  std::sort(newcomers.begin(), newcomers.end(), [](const Newcomer& a, const Newcomer& b) {
    uint32_t ua = a.parsed.uid.value_or(UINT32_MAX), ub = b.parsed.uid.value_or(UINT32_MAX);
    return ua != ub ? ua < ub : a.parsed.base < b.parsed.base;
  });
  std::vector<std::string> paths;
  for (const Newcomer& n : newcomers) paths.push_back(JoinPath(JoinPath(dir_, SubdirName(n.where.dir)), n.where.name));
  std::vector<Result<FileDigest>> digests = DigestFiles(fs_, paths);
  for (size_t k = 0; k < newcomers.size(); ++k) {
    const Newcomer& n = newcomers[k];
    OnDisk where = n.where;
    Result<FileDigest>& digest = digests[k];
    for (int retry = 0; retry < kMissingRetries && !digest.ok() &&
                        digest.status().kind() == Status::Kind::kNotFound;
         ++retry) {
      // Renamed between readdir and open: find it again by its base name.
      HF_ASSIGN_OR_RETURN(auto again, ScanDirs(fs_, dir_));
      auto it = again.find(n.parsed.base);
      if (it == again.end()) break;
      where = it->second;
      digest = DigestFile(fs_, JoinPath(JoinPath(dir_, SubdirName(where.dir)), where.name));
    }
    if (!digest.ok()) {
      if (digest.status().kind() == Status::Kind::kNotFound) continue;  // really gone meanwhile
      return digest.status();
    }
    IndexRecord add;
    add.type = RecordType::kAdd;
    IndexEntry& e = add.entry;
    auto gone = state.GoneBase(n.parsed.base);
    if (gone && gone->second == GoneReason::kVanished) {
      e.uid = gone->first;  // it came back
    } else if (n.parsed.uid && !state.UidTaken(*n.parsed.uid) && !gone) {
      e.uid = *n.parsed.uid;  // its own UID: the index lost or never got its Add
    } else {
      e.uid = std::max(state.uid_next(), uid_floor_ + 1);
    }
    e.id = n.parsed.Identity();
    e.dir = where.dir;
    e.name = where.name;
    e.size = digest->size;
    e.vsize = digest->vsize;
    e.eol_added = digest->eol_added;
    e.sha256 = digest->sha256;
    add.uid = e.uid;
    IndexRecord seen;
    seen.type = RecordType::kConfirm;
    seen.uid = e.uid;
    HF_RETURN_IF_ERROR(emit(std::move(add)));
    HF_RETURN_IF_ERROR(emit(std::move(seen)));
  }
  return Status::Ok();
}

// tmp/ holds only messages that were never acknowledged: a file no live
// writer holds locked is a crash leftover and is removed (rolled back).
Status Mailbox::RecoverTmp() {
  const std::string tmp = Path("tmp");
  HF_ASSIGN_OR_RETURN(auto names, fs_.ReadDir(tmp));
  const int64_t now_ns = NowMs() * 1000000;
  bool removed = false;
  for (const auto& name : names) {
    const std::string p = JoinPath(tmp, name);
    auto info = fs_.Stat(p);
    if (!info.ok() || info->is_dir || now_ns - info->mtime_ns < kTmpGraceNs) continue;
    {
      auto file = fs_.OpenRead(p);
      if (!file.ok()) continue;
      Status lock = (*file)->TryLockExclusive();
      if (lock.kind() == Status::Kind::kBusy) continue;  // a live delivery
      HF_RETURN_IF_ERROR(lock);
    }
    Status s = fs_.Unlink(p);
    if (!s.ok() && s.kind() != Status::Kind::kNotFound) return s;
    removed = true;
    recovery_log_.push_back("removed unfinished delivery tmp/" + name);
  }
  if (removed) HF_RETURN_IF_ERROR(fs_.SyncDir(tmp));
  return Status::Ok();
}

// Unlinks the files of `uids` (each checked against its identity by base
// name) and makes the removals durable. Missing files are already gone.
Status Mailbox::RemoveFiles(const std::vector<uint32_t>& uids) {
  bool touched[2] = {false, false};
  std::optional<std::unordered_map<std::string, OnDisk>> rescan;
  for (uint32_t uid : uids) {
    const IndexEntry& e = *state_.FindUid(uid);
    Status s = fs_.Unlink(e.Path(dir_));
    MaildirDir dir = e.dir;
    if (s.kind() == Status::Kind::kNotFound) {
      // Renamed by another tool since the last sync: find it by base name,
      // which is unique to this message (its MessageId is in it).
      if (!rescan) {
        HF_ASSIGN_OR_RETURN(auto found, ScanDirs(fs_, dir_));
        rescan = std::move(found);
      }
      auto it = rescan->find(e.Base());
      if (it == rescan->end()) continue;
      dir = it->second.dir;
      s = fs_.Unlink(JoinPath(JoinPath(dir_, SubdirName(dir)), it->second.name));
      if (s.kind() == Status::Kind::kNotFound) continue;
    }
    HF_RETURN_IF_ERROR(s);
    touched[static_cast<int>(dir)] = true;
  }
  for (MaildirDir d : {MaildirDir::kNew, MaildirDir::kCur}) {
    if (touched[static_cast<int>(d)]) HF_RETURN_IF_ERROR(fs_.SyncDir(Path(SubdirName(d))));
  }
  return Status::Ok();
}

Status Mailbox::FinishRequestedExpunges() {
  std::vector<uint32_t> uids;
  std::vector<IndexRecord> gone;
  for (const auto& [uid, e] : state_.live()) {
    if (!e.expunge_requested) continue;
    uids.push_back(uid);
    gone.push_back(GoneRecord(e, GoneReason::kExpunged));
    recovery_expunged_.push_back(e.id);
  }
  if (uids.empty()) return Status::Ok();
  HF_RETURN_IF_ERROR(RemoveFiles(uids));
  HF_RETURN_IF_ERROR(Log(gone, true));
  recovery_log_.push_back("finished " + std::to_string(uids.size()) + " requested expunge(s)");
  return Status::Ok();
}

Result<std::unique_ptr<Delivery>> Mailbox::BeginDelivery(std::optional<MessageId> given) {
  MessageId id = given ? *given : MessageId::Generate();
  std::string name = TmpName(static_cast<int64_t>(id.UnixMillis() / 1000), id, opts_.hostname);
  auto created = fs_.CreateExclusive(Path("tmp/" + name), 0600);
  if (!created.ok() && created.status().kind() == Status::Kind::kExists && given) {
    // A replay of a delivery that crashed: its tmp file may still be there
    // (younger than recovery's grace). If no live writer holds it, it is ours.
    auto old = fs_.OpenRead(Path("tmp/" + name));
    if (old.ok() && (*old)->TryLockExclusive().ok()) {
      old->reset();
      HF_RETURN_IF_ERROR(fs_.Unlink(Path("tmp/" + name)));
      created = fs_.CreateExclusive(Path("tmp/" + name), 0600);
    }
  }
  if (!created.ok()) return created.status();
  auto file = std::move(created).value();
  // Held until the Delivery ends: tells recovery this file is not a leftover.
  HF_RETURN_IF_ERROR(file->TryLockExclusive());
  return std::unique_ptr<Delivery>(new Delivery(this, id, std::move(name), std::move(file)));
}

std::vector<Result<DeliveredMessage>> Mailbox::CommitAll(const std::vector<Delivery*>& ds) {
  std::vector<Result<DeliveredMessage>> out(ds.size(), Status::Invalid("delivery already finished"));
  std::vector<File*> files;
  std::vector<size_t> which;  // index into ds of each file
  for (size_t i = 0; i < ds.size(); ++i) {
    if (ds[i]->done_) continue;
    files.push_back(ds[i]->file_.get());
    which.push_back(i);
  }
  // Every message's data first (concurrently: one journal commit for all).
  std::vector<Status> synced = fs_.SyncDataAll(files);
  std::vector<size_t> live;
  for (size_t k = 0; k < which.size(); ++k) {
    if (synced[k].ok()) live.push_back(which[k]);
    else out[which[k]] = synced[k];
  }
  if (live.empty()) return out;
  auto fail_all = [&](const Status& s) {
    for (size_t i : live) out[i] = s;
    return out;
  };
  std::vector<DeliveredMessage> made;
  bool touched[2] = {false, false};  // new/, cur/: which directories get an entry
  if (view_) LoadWholeJournalNextTime();  // a listing view knows no tombstones or gone names
  {
    auto lock = LockAndLoad();
    if (!lock.ok()) return fail_all(lock.status());
    // UIDs assigned under the lock and made durable (one sync for all Add
    // records) before any file appears in new/: after any crash the next UID
    // is past these, so no two files ever carry the same U= (a crash in
    // between only leaves UIDs unused).
    std::vector<IndexRecord> adds;
    uint32_t uid = std::max(NextUid(), uid_floor_ + 1);
    for (size_t i : live) {
      Delivery& d = *ds[i];
      DeliveredMessage m;
      m.uid = uid++;
      m.id = d.id_;
      m.size = d.size_;
      m.name = FinalName(d.tmp_name_, d.size_, d.size_ + d.bare_lf_, m.uid);
      if (d.dir_ == MaildirDir::kCur) m.name += ":2," + d.flags_;
      IndexRecord add;
      add.type = RecordType::kAdd;
      add.uid = m.uid;
      add.entry.uid = m.uid;
      add.entry.id = d.id_;
      add.entry.dir = d.dir_;
      add.entry.name = m.name;
      add.entry.size = d.size_;
      add.entry.vsize = d.size_ + d.bare_lf_;
      add.entry.eol_added = EolAdded(d.size_, d.last_char_);
      add.entry.sha256 = d.sha_.Finish();
      adds.push_back(std::move(add));
      made.push_back(std::move(m));
    }
    Status logged = Log(adds, true);
    if (!logged.ok()) return fail_all(logged);
    uid_floor_ = made.back().uid;
    WriteSummary();
    for (size_t k = 0; k < live.size(); ++k) {
      Delivery& d = *ds[live[k]];
      Status r = fs_.Rename(Path("tmp/" + d.tmp_name_),
                            Path(std::string(SubdirName(d.dir_)) + "/" + made[k].name));
      touched[static_cast<int>(d.dir_)] = true;
      if (r.ok()) d.done_ = true;  // the file is in new/ (cur/) now: nothing to remove on failure
      out[live[k]] = r.ok() ? Result<DeliveredMessage>(made[k]) : Result<DeliveredMessage>(r);
    }
  }
  Status dir;
  for (MaildirDir where : {MaildirDir::kNew, MaildirDir::kCur}) {
    if (dir.ok() && touched[static_cast<int>(where)]) dir = fs_.SyncDir(Path(SubdirName(where)));
  }
  if (!dir.ok()) {
    for (size_t i : live) {
      if (out[i].ok()) out[i] = dir;
    }
  }
  return out;
}

// Caller holds the lock. Synced before anyone sees the UIDs, so a crash
// cannot hand them out again.
Status Mailbox::CatchUpWithDirectory(std::vector<IndexRecord>* changes) {
  // Nothing in new/ or cur/ changed since a scan that matched the index
  // completely: skip the scan (a warm POP3 login on a big mailbox). Any
  // create, rename or unlink there moves a directory's mtime past the stamp,
  // which a quiet scan took more than the mtime granularity after the last
  // change; an entry not yet confirmed (an Add whose rename may not have
  // happened) always forces a scan.
  if (scanned_at_ && AllConfirmed()) {
    auto now = DirMtimes(fs_, dir_);
    if (now.ok() && *now == *scanned_at_) return Status::Ok();
  }
  scanned_at_.reset();
  MailboxIndex next = state_;
  DirStamp quiet_at;
  HF_RETURN_IF_ERROR(SyncWithDirectory(next, changes, &quiet_at));
  Status s = Log(*changes, true);
  if (s.ok() && quiet_at && AllConfirmed()) scanned_at_ = quiet_at;
  if (s.ok() || s.kind() != Status::Kind::kIo) return s;
  // Disk full or failing: serve what is safe from memory. Renames and
  // removals change no UID; new files wait until their UIDs can be recorded.
  for (const auto& c : *changes) {
    if (c.type != RecordType::kAdd) (void)state_.Apply(c);
  }
  return Status::Ok();
}

bool Mailbox::AllConfirmed() const { return state_.AllConfirmed(); }

Status Mailbox::Refresh(bool scan_directory) {
  LoadWholeJournalNextTime();
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  if (!scan_directory) return Status::Ok();
  std::vector<IndexRecord> changes;
  return CatchUpWithDirectory(&changes);
}

Status Mailbox::CatchUpForListing() {
  LoadWholeJournalNextTime();
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  std::vector<IndexRecord> changes;
  HF_RETURN_IF_ERROR(CatchUpWithDirectory(&changes));
  // Compact when the journal is mostly history.
  if (journal_offset_ > (64u << 10) && journal_offset_ > 4 * 160 * (state_.live().size() + 1)) {
    (void)WriteNewJournal(state_);  // an optimisation: if it fails, the old journal stays
  }
  MaybeWriteCheckpoint();
  return Status::Ok();
}

Result<std::vector<IndexEntry>> Mailbox::List() {
  HF_RETURN_IF_ERROR(CatchUpForListing());
  std::vector<IndexEntry> out;
  out.reserve(state_.live().size());
  for (const auto& [uid, e] : state_.live()) {
    if (!e.expunge_requested) out.push_back(e);
  }
  return out;
}

Result<std::vector<MessageRef>> Mailbox::ListRefs() {
  std::vector<MessageRef> out;
  if (view_) {
    HF_ASSIGN_OR_RETURN(bool served, ListFromView(&out));
    if (served) return out;
    out.clear();
  }
  HF_RETURN_IF_ERROR(CatchUpForListing());
  out.reserve(state_.live().size());
  for (const auto& [uid, e] : state_.live()) {
    if (!e.expunge_requested) out.push_back(MessageRef{e.uid, e.id, e.network_size()});
  }
  return out;
}

Result<std::string> Mailbox::PathOf(uint32_t uid, const MessageId& id) const {
  if (view_) {
    for (const IndexEntry& e : view_added_) {
      if (e.uid == uid && e.id == id) return e.Path(dir_);
    }
    auto at = view_->Find(uid);
    if (at && view_->At(*at).id == id) {
      const CheckpointEntry c = view_->At(*at);
      HF_ASSIGN_OR_RETURN(std::string name, view_->Name(*at));
      return JoinPath(JoinPath(dir_, SubdirName(c.dir)), name);
    }
    return Status::NotFound("uid " + std::to_string(uid) + " is no longer in the mailbox");
  }
  const IndexEntry* e = state_.FindUid(uid);
  if (e == nullptr || e->id != id || e->expunge_requested) {
    return Status::NotFound("uid " + std::to_string(uid) + " is no longer in the mailbox");
  }
  return e->Path(dir_);
}

Status Mailbox::Expunge(const std::vector<ExpungeTarget>& targets,
                        const std::function<void(const std::vector<MessageId>&)>& committed) {
  LoadWholeJournalNextTime();
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  std::vector<IndexRecord> requests, gone;
  std::vector<uint32_t> uids;
  std::vector<MessageId> ids;
  for (const ExpungeTarget& t : targets) {
    const IndexEntry* e = state_.FindUid(t.uid);
    if (e == nullptr) continue;  // already gone: expunging twice is harmless
    if (e->id != t.id) {
      return Status::Invalid("uid " + std::to_string(t.uid) + " is message " + e->id.ToString() + ", not " +
                             t.id.ToString() + ": nothing expunged");
    }
    if (std::find(uids.begin(), uids.end(), t.uid) != uids.end()) continue;
    IndexRecord r;
    r.type = RecordType::kExpungeRequest;
    r.uid = t.uid;
    r.id = t.id;
    requests.push_back(r);
    gone.push_back(GoneRecord(*e, GoneReason::kExpunged));
    uids.push_back(t.uid);
    ids.push_back(t.id);
  }
  if (uids.empty()) return Status::Ok();
  HF_RETURN_IF_ERROR(Log(requests, true));  // state 1: requested, durable
  if (committed) committed(ids);
  HF_RETURN_IF_ERROR(RemoveFiles(uids));
  return Log(gone, true);                   // state 2: gone, durable
}

Status Mailbox::Rebuild() {
  LoadWholeJournalNextTime();
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  MailboxIndex keep;
  // Keep the header, UIDs and pending expunges; drop everything derived.
  for (const auto& rec : state_.Snapshot(0)) (void)keep.Apply(rec);
  return RebuildFrom(std::move(keep), "index rebuilt on request");
}

Result<FsckReport> Mailbox::Fsck(bool repair, const std::function<void(size_t, size_t)>& progress) {
  FsckReport report;
  report.repairs = recovery_log_;
  LoadWholeJournalNextTime();
  HF_ASSIGN_OR_RETURN(Lock lock, LockAndLoad());
  for (size_t i = report.repairs.size(); i < recovery_log_.size(); ++i) report.repairs.push_back(recovery_log_[i]);
  std::vector<IndexRecord> changes;
  HF_RETURN_IF_ERROR(CatchUpWithDirectory(&changes));
  for (const auto& c : changes) {
    if (c.type == RecordType::kAdd) report.repairs.push_back("indexed " + c.entry.name + " as uid " + std::to_string(c.uid));
    if (c.type == RecordType::kGone) report.repairs.push_back("uid " + std::to_string(c.uid) + " no longer on disk");
  }

  std::vector<IndexEntry> entries;
  for (const auto& [uid, e] : state_.live()) entries.push_back(e);
  std::vector<IndexRecord> set_aside;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (progress) progress(i, entries.size());
    const IndexEntry& e = entries[i];
    ++report.messages_checked;
    auto digest = DigestFile(fs_, e.Path(dir_));
    if (!digest.ok()) {
      report.problems.push_back("uid " + std::to_string(e.uid) + " " + e.name + ": " + digest.status().ToString());
      continue;
    }
    if (digest->size == e.size && digest->sha256 == e.sha256) continue;
    std::string what = "uid " + std::to_string(e.uid) + " " + e.name + ": " +
                       (digest->size != e.size ? "size " + std::to_string(digest->size) + ", index says " +
                                                     std::to_string(e.size)
                                               : std::string("checksum mismatch"));
    if (!repair) {
      report.problems.push_back(what);
      ++report.damaged_remaining;
      continue;
    }
    // Set aside, never deleted: an operator may still want the bytes.
    HF_RETURN_IF_ERROR(fs_.EnsureDir(Path(kDamagedDir)));
    HF_RETURN_IF_ERROR(fs_.Rename(e.Path(dir_), Path(std::string(kDamagedDir) + "/" + e.name)));
    HF_RETURN_IF_ERROR(fs_.SyncDir(Path(kDamagedDir)));
    HF_RETURN_IF_ERROR(fs_.SyncDir(Path(SubdirName(e.dir))));
    HF_RETURN_IF_ERROR(fs_.SyncDir(dir_));
    set_aside.push_back(GoneRecord(e, GoneReason::kDamaged));
    report.repairs.push_back(what + ": moved to " + kDamagedDir + "/");
  }
  if (progress) progress(entries.size(), entries.size());
  HF_RETURN_IF_ERROR(Log(set_aside, true));
  return report;
}

}  // namespace holdfast
