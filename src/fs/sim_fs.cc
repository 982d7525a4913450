// SimFs: the in-memory file system of sim_fs.h. The model (what a crash may
// keep) is written down in docs/persistence.md; this file implements it.
//
// State is kept as two images of the same inode table: `cur` (what a running
// process sees) and `durable` (what survives any power loss). Every mutation
// that is not yet durable is also a PendingOp, in one global order, with the
// ids of the earlier pending ops it depends on. A sync moves a dependency-
// closed set of pending ops into `durable`; AfterCrash replays a chosen legal
// subset of them on top of `durable`.
#include "fs/sim_fs.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <random>
#include <set>
#include <unordered_map>

namespace holdfast {
namespace {

constexpr uint64_t kRootIno = 1;

struct Node {
  bool is_dir = false;
  std::string data;                          // files
  std::map<std::string, uint64_t> entries;   // directories: name -> inode
  int64_t mtime = 0;
  int nlink = 0;       // directory entries naming it (kept up to date by Apply)
  int open_files = 0;  // `cur` only: open File objects (keeps unlinked data alive)
};
using Image = std::map<uint64_t, Node>;

enum class OpKind { kAppend, kTruncate, kCreate, kMkDir, kLink, kUnlink, kRename };

// One mutation, as recorded. Entry ops name (dir, name); Rename also names
// its destination in (dir2, name2), Link its source.
struct PendingOp {
  uint64_t id = 0;
  OpKind kind = OpKind::kAppend;
  uint64_t ino = 0;  // data ops: the file; create/mkdir/link/rename: the inode named
  std::string bytes;
  uint64_t size = 0;
  uint64_t dir = 0, dir2 = 0;
  std::string name, name2;
  std::vector<uint64_t> deps;  // ids of earlier ops this one needs
  std::string desc;
  bool is_data() const { return kind == OpKind::kAppend || kind == OpKind::kTruncate; }
};

void SetEntry(Image& img, uint64_t dir, const std::string& name, uint64_t ino) {
  auto& entries = img[dir].entries;
  auto it = entries.find(name);
  if (it != entries.end()) --img[it->second].nlink;
  entries[name] = ino;
  ++img[ino].nlink;
}

void EraseEntry(Image& img, uint64_t dir, const std::string& name) {
  auto& entries = img[dir].entries;
  auto it = entries.find(name);
  if (it == entries.end()) return;
  --img[it->second].nlink;
  entries.erase(it);
}

// Applies one op to an image. `torn` >= 0 cuts an append to that many bytes.
// Nodes are created on first mention, so a file's synced data has a home in
// `durable` even before its name does.
void Apply(const PendingOp& op, Image& img, int64_t torn = -1) {
  switch (op.kind) {
    case OpKind::kAppend:
      img[op.ino].data += torn >= 0 ? op.bytes.substr(0, static_cast<size_t>(torn)) : op.bytes;
      break;
    case OpKind::kTruncate:
      img[op.ino].data.resize(op.size, '\0');
      break;
    case OpKind::kCreate:
    case OpKind::kMkDir:
      img[op.ino].is_dir = op.kind == OpKind::kMkDir;
      SetEntry(img, op.dir, op.name, op.ino);
      break;
    case OpKind::kLink:
      SetEntry(img, op.dir, op.name, op.ino);
      break;
    case OpKind::kUnlink:
      EraseEntry(img, op.dir, op.name);
      break;
    case OpKind::kRename:
      EraseEntry(img, op.dir, op.name);
      SetEntry(img, op.dir2, op.name2, op.ino);
      break;
  }
}

Result<std::vector<std::string>> SplitPath(const std::string& path) {
  if (path.empty() || path[0] != '/') return Status::Invalid("not an absolute path: '" + path + "'");
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (part == "." || part == "..") return Status::Invalid("'.' or '..' in path: " + path);
    if (!part.empty()) parts.push_back(std::move(part));
    i = j + 1;
  }
  return parts;
}

// Where a path leads in `cur`: its parent directory and, if it exists, itself.
struct Loc {
  std::string path;                 // normalised
  uint64_t parent = 0;              // 0 for the root
  std::string name;
  uint64_t ino = 0;                 // 0 when the name does not exist
  std::vector<uint64_t> ancestors;  // directories from the root to `parent`
};

}  // namespace

struct SimFs::Impl {
  mutable std::mutex mu;
  std::condition_variable cv;  // a lock was released, or the machine crashed
  Image cur, durable;
  std::vector<PendingOp> pending;
  uint64_t next_ino = kRootIno + 1, next_op_id = 1, next_owner = 1;
  int64_t clock = 0;  // logical mtime
  uint64_t boots = 0;  // crashes survived: BootId()
  // Most recent op per entry / per file / MkDir per new directory, for deps.
  std::map<std::pair<uint64_t, std::string>, uint64_t> last_entry_op;
  std::map<uint64_t, uint64_t> last_data_op, mkdir_op;
  std::map<uint64_t, uint64_t> locks;  // inode -> owner token (File or FileLock)
  uint64_t crash_after = 0, ops = 0;
  bool crashed = false;
  std::vector<std::string> log;
  uint64_t capacity = 0;
  std::map<std::string, int> fail_next;

  Impl() {
    cur[kRootIno].is_dir = true;
    durable[kRootIno].is_dir = true;
  }

  // Every call starts here: a crashed machine answers nothing, and an
  // injected failure is consumed by the first call of its kind.
  Status Check(const std::string& op, const std::string& what) {
    if (crashed) return Status::Crashed(op + " " + what);
    auto it = fail_next.find(op);
    if (it != fail_next.end()) {
      int err = it->second;
      fail_next.erase(it);
      return Status::FromErrno(op + " " + what + " (injected)", err);
    }
    return Status::Ok();
  }

  Result<Loc> Resolve(const std::string& path) const {
    HF_ASSIGN_OR_RETURN(auto parts, SplitPath(path));
    Loc loc;
    for (const auto& p : parts) loc.path += "/" + p;
    if (parts.empty()) {
      loc.path = "/";
      loc.ino = kRootIno;
      return loc;
    }
    uint64_t dir = kRootIno;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      loc.ancestors.push_back(dir);
      const auto& entries = cur.at(dir).entries;
      auto it = entries.find(parts[i]);
      if (it == entries.end()) return Status::FromErrno(path, ENOENT);
      if (!cur.at(it->second).is_dir) return Status::FromErrno(path, ENOTDIR);
      dir = it->second;
    }
    loc.ancestors.push_back(dir);
    loc.parent = dir;
    loc.name = parts.back();
    auto it = cur.at(dir).entries.find(loc.name);
    if (it != cur.at(dir).entries.end()) loc.ino = it->second;
    return loc;
  }

  // A mutating op completed: log it, count it, and crash if this was the one.
  void Done(const std::string& line) {
    log.push_back(line);
    ++ops;
    if (crash_after != 0 && ops == crash_after) {
      crashed = true;
      cv.notify_all();
    }
  }

  // Records a not-yet-durable op (with its dependencies), applies it to
  // `cur`, and counts it.
  void Mutate(PendingOp op) {
    op.id = next_op_id++;
    auto need = [&](const std::map<uint64_t, uint64_t>& m, uint64_t key) {
      auto it = m.find(key);
      if (it != m.end()) op.deps.push_back(it->second);
    };
    if (op.is_data()) {
      need(last_data_op, op.ino);
      last_data_op[op.ino] = op.id;
    } else {
      std::vector<std::pair<uint64_t, std::string>> touched = {{op.dir, op.name}};
      if (op.kind == OpKind::kRename || op.kind == OpKind::kLink) touched.emplace_back(op.dir2, op.name2);
      for (auto& entry : touched) {
        auto it = last_entry_op.find(entry);
        if (it != last_entry_op.end()) op.deps.push_back(it->second);
        last_entry_op[entry] = op.id;
        need(mkdir_op, entry.first);  // contents of a new directory need it
      }
      if (op.kind == OpKind::kMkDir) mkdir_op[op.ino] = op.id;
    }
    Apply(op, cur);
    ++clock;  // the changed file, or the changed directories, get a new mtime
    if (op.is_data() || op.kind == OpKind::kCreate || op.kind == OpKind::kMkDir) cur[op.ino].mtime = clock;
    if (!op.is_data()) cur[op.dir].mtime = clock;
    if (op.kind == OpKind::kRename) cur[op.dir2].mtime = clock;
    std::string line = op.desc;
    pending.push_back(std::move(op));
    Done(line);
  }

  std::unordered_map<uint64_t, size_t> PendingIndex() const {
    std::unordered_map<uint64_t, size_t> index;
    for (size_t i = 0; i < pending.size(); ++i) index[pending[i].id] = i;
    return index;
  }

  // Makes the selected pending ops and (transitively) their dependencies
  // durable. Deps always point backwards, so one backwards sweep closes it.
  void MakeDurable(std::vector<bool> sel) {
    auto index = PendingIndex();
    for (size_t i = pending.size(); i-- > 0;) {
      if (!sel[i]) continue;
      for (uint64_t d : pending[i].deps) {
        auto it = index.find(d);
        if (it != index.end()) sel[it->second] = true;
      }
    }
    std::vector<PendingOp> rest;
    for (size_t i = 0; i < pending.size(); ++i) {
      if (sel[i]) Apply(pending[i], durable);
      else rest.push_back(std::move(pending[i]));
    }
    pending = std::move(rest);
  }

  // The subset of `keep` that may survive: an op whose pending dependency is
  // not kept is dropped too (we never add ops the caller did not keep).
  std::vector<bool> CloseDown(const std::vector<bool>& keep) const {
    auto index = PendingIndex();
    std::vector<bool> kept(pending.size(), false);
    for (size_t i = 0; i < pending.size(); ++i) {
      kept[i] = i < keep.size() && keep[i];
      for (uint64_t d : pending[i].deps) {
        auto it = index.find(d);
        if (it != index.end() && !kept[it->second]) kept[i] = false;
      }
    }
    return kept;
  }

  // Index of the last kept append, or -1: the one a torn write cuts.
  int64_t LastKeptAppend(const std::vector<bool>& kept) const {
    for (size_t i = pending.size(); i-- > 0;)
      if (kept[i] && pending[i].kind == OpKind::kAppend) return static_cast<int64_t>(i);
    return -1;
  }

  uint64_t LiveBytes() const {
    uint64_t total = 0;
    for (const auto& [ino, n] : cur)
      if (!n.is_dir && (n.nlink > 0 || n.open_files > 0)) total += n.data.size();
    return total;
  }
};

namespace {

class SimFile : public File {
 public:
  SimFile(std::shared_ptr<SimFs::Impl> impl, uint64_t ino, std::string path, bool writable, uint64_t token)
      : impl_(std::move(impl)), ino_(ino), path_(std::move(path)), writable_(writable), token_(token) {}

  ~SimFile() override {
    std::lock_guard<std::mutex> g(impl_->mu);
    --impl_->cur[ino_].open_files;
    auto it = impl_->locks.find(ino_);
    if (it != impl_->locks.end() && it->second == token_) {
      impl_->locks.erase(it);
      impl_->cv.notify_all();
    }
  }

  Status Append(std::string_view data) override {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check("append", path_));
    if (!writable_) return Status::FromErrno("append " + path_, EBADF);
    if (impl_->capacity != 0 && impl_->LiveBytes() + data.size() > impl_->capacity)
      return Status::FromErrno("append " + path_, ENOSPC);
    PendingOp op;
    op.kind = OpKind::kAppend;
    op.ino = ino_;
    op.bytes = std::string(data);
    op.desc = "append " + path_ + " " + std::to_string(data.size()) + " bytes";
    impl_->Mutate(std::move(op));
    return Status::Ok();
  }

  Status SyncData() override { return DoSync("syncdata"); }
  // The model has no inode metadata apart from data and size, so fsync and
  // fdatasync are the same; neither makes the file's name durable.
  Status Sync() override { return DoSync("sync"); }

  Result<size_t> ReadAt(uint64_t offset, char* buf, size_t n) override {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check("read", path_));
    const std::string& data = impl_->cur[ino_].data;
    if (offset >= data.size()) return size_t{0};
    size_t got = std::min<uint64_t>(n, data.size() - offset);
    std::copy_n(data.data() + offset, got, buf);
    return got;
  }

  Result<uint64_t> Size() override {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check("stat", path_));
    return static_cast<uint64_t>(impl_->cur[ino_].data.size());
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check("truncate", path_));
    if (!writable_) return Status::FromErrno("truncate " + path_, EINVAL);  // as ftruncate(2)
    PendingOp op;
    op.kind = OpKind::kTruncate;
    op.ino = ino_;
    op.size = size;
    op.desc = "truncate " + path_ + " to " + std::to_string(size);
    impl_->Mutate(std::move(op));
    return Status::Ok();
  }

  Status TryLockExclusive() override {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check("lock", path_));
    auto it = impl_->locks.find(ino_);
    if (it != impl_->locks.end() && it->second != token_) return Status::FromErrno("flock " + path_, EWOULDBLOCK);
    impl_->locks[ino_] = token_;
    return Status::Ok();
  }

 private:
  Status DoSync(const std::string& verb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    HF_RETURN_IF_ERROR(impl_->Check(verb, path_));
    std::vector<bool> sel(impl_->pending.size());
    for (size_t i = 0; i < sel.size(); ++i) sel[i] = impl_->pending[i].is_data() && impl_->pending[i].ino == ino_;
    impl_->MakeDurable(std::move(sel));
    impl_->Done(verb + " " + path_);
    return Status::Ok();
  }

  std::shared_ptr<SimFs::Impl> impl_;
  uint64_t ino_;
  std::string path_;  // as opened; only for messages and the op log
  bool writable_;
  uint64_t token_;    // identifies this open file description in the lock table
};

class SimFileLock : public FileLock {
 public:
  SimFileLock(std::shared_ptr<SimFs::Impl> impl, uint64_t ino, uint64_t token)
      : impl_(std::move(impl)), ino_(ino), token_(token) {}
  ~SimFileLock() override {
    std::lock_guard<std::mutex> g(impl_->mu);
    auto it = impl_->locks.find(ino_);
    if (it != impl_->locks.end() && it->second == token_) {
      impl_->locks.erase(it);
      impl_->cv.notify_all();
    }
  }

 private:
  std::shared_ptr<SimFs::Impl> impl_;
  uint64_t ino_, token_;
};

std::unique_ptr<File> NewFile(const std::shared_ptr<SimFs::Impl>& impl, uint64_t ino, const std::string& path,
                              bool writable) {
  ++impl->cur[ino].open_files;
  return std::make_unique<SimFile>(impl, ino, path, writable, impl->next_owner++);
}

}  // namespace

std::string CrashChoice::Describe() const {
  std::string s;
  switch (mode) {
    case Mode::kDurableOnly: s = "durable-only"; break;
    case Mode::kEverything: s = "everything"; break;
    case Mode::kMask:
      s = "mask ";
      for (bool b : keep) s += b ? '1' : '0';
      break;
  }
  if (torn_bytes >= 0) s += " torn=" + std::to_string(torn_bytes);
  return s;
}

SimFs::SimFs() : impl_(std::make_shared<Impl>()) {}
SimFs::~SimFs() = default;

Result<std::unique_ptr<File>> SimFs::CreateExclusive(const std::string& path, int /*mode*/) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("create", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino != 0) return Status::FromErrno("create " + path, EEXIST);
  PendingOp op;
  op.kind = OpKind::kCreate;
  op.ino = impl_->next_ino++;
  op.dir = loc.parent;
  op.name = loc.name;
  op.desc = "create " + loc.path;
  uint64_t ino = op.ino;
  impl_->Mutate(std::move(op));
  return NewFile(impl_, ino, loc.path, true);
}

static Result<std::unique_ptr<File>> Open(const std::shared_ptr<SimFs::Impl>& impl, const std::string& path,
                                          bool writable) {
  std::lock_guard<std::mutex> g(impl->mu);
  HF_RETURN_IF_ERROR(impl->Check("open", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl->Resolve(path));
  if (loc.ino == 0) return Status::FromErrno("open " + path, ENOENT);
  if (impl->cur[loc.ino].is_dir) return Status::FromErrno("open " + path, EISDIR);
  return NewFile(impl, loc.ino, loc.path, writable);
}

Result<std::unique_ptr<File>> SimFs::OpenRead(const std::string& path) { return Open(impl_, path, false); }
Result<std::unique_ptr<File>> SimFs::OpenAppend(const std::string& path) { return Open(impl_, path, true); }

Status SimFs::Rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> g(impl_->mu);
  const std::string what = "rename " + from + " -> " + to;
  HF_RETURN_IF_ERROR(impl_->Check("rename", what));
  HF_ASSIGN_OR_RETURN(Loc src, impl_->Resolve(from));
  HF_ASSIGN_OR_RETURN(Loc dst, impl_->Resolve(to));
  if (src.ino == 0) return Status::FromErrno(what, ENOENT);
  if (src.parent == 0 || dst.parent == 0) return Status::FromErrno(what, EBUSY);
  const std::string line = "rename " + src.path + " -> " + dst.path;
  if (src.ino == dst.ino) {  // rename(2) does nothing when both name one inode
    impl_->Done(line);
    return Status::Ok();
  }
  const bool src_dir = impl_->cur[src.ino].is_dir;
  if (src_dir && std::count(dst.ancestors.begin(), dst.ancestors.end(), src.ino) > 0)
    return Status::FromErrno(what, EINVAL);  // into its own subtree
  if (dst.ino != 0) {
    const Node& old = impl_->cur[dst.ino];
    if (src_dir && !old.is_dir) return Status::FromErrno(what, ENOTDIR);
    if (!src_dir && old.is_dir) return Status::FromErrno(what, EISDIR);
    if (old.is_dir && !old.entries.empty()) return Status::FromErrno(what, ENOTEMPTY);
  }
  PendingOp op;
  op.kind = OpKind::kRename;
  op.ino = src.ino;
  op.dir = src.parent;
  op.name = src.name;
  op.dir2 = dst.parent;
  op.name2 = dst.name;
  op.desc = line;
  impl_->Mutate(std::move(op));
  return Status::Ok();
}

Status SimFs::Link(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> g(impl_->mu);
  const std::string what = "link " + from + " -> " + to;
  HF_RETURN_IF_ERROR(impl_->Check("link", what));
  HF_ASSIGN_OR_RETURN(Loc src, impl_->Resolve(from));
  HF_ASSIGN_OR_RETURN(Loc dst, impl_->Resolve(to));
  if (src.ino == 0) return Status::FromErrno(what, ENOENT);
  if (impl_->cur[src.ino].is_dir) return Status::FromErrno(what, EPERM);
  if (dst.ino != 0) return Status::FromErrno(what, EEXIST);
  PendingOp op;
  op.kind = OpKind::kLink;
  op.ino = src.ino;
  op.dir = dst.parent;  // the entry it creates
  op.name = dst.name;
  op.dir2 = src.parent;  // the entry it reads: later changes to it are ordered after
  op.name2 = src.name;
  op.desc = "link " + src.path + " -> " + dst.path;
  impl_->Mutate(std::move(op));
  return Status::Ok();
}

Status SimFs::Unlink(const std::string& path) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("unlink", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino == 0) return Status::FromErrno("unlink " + path, ENOENT);
  if (impl_->cur[loc.ino].is_dir) return Status::FromErrno("unlink " + path, EISDIR);
  PendingOp op;
  op.kind = OpKind::kUnlink;
  op.ino = loc.ino;
  op.dir = loc.parent;
  op.name = loc.name;
  op.desc = "unlink " + loc.path;
  impl_->Mutate(std::move(op));
  return Status::Ok();
}

Status SimFs::MkDir(const std::string& path, int /*mode*/) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("mkdir", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino != 0) return Status::FromErrno("mkdir " + path, EEXIST);
  PendingOp op;
  op.kind = OpKind::kMkDir;
  op.ino = impl_->next_ino++;
  op.dir = loc.parent;
  op.name = loc.name;
  op.desc = "mkdir " + loc.path;
  impl_->Mutate(std::move(op));
  return Status::Ok();
}

Status SimFs::SyncDir(const std::string& path) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("syncdir", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino == 0) return Status::FromErrno("syncdir " + path, ENOENT);
  if (!impl_->cur[loc.ino].is_dir) return Status::FromErrno("syncdir " + path, ENOTDIR);
  // Every entry op that changed this directory; a rename is one journal
  // transaction, so syncing either side commits both.
  std::vector<bool> sel(impl_->pending.size());
  for (size_t i = 0; i < sel.size(); ++i) {
    const PendingOp& op = impl_->pending[i];
    sel[i] = !op.is_data() && (op.dir == loc.ino || (op.kind == OpKind::kRename && op.dir2 == loc.ino));
  }
  impl_->MakeDurable(std::move(sel));
  impl_->Done("syncdir " + loc.path);
  return Status::Ok();
}

Result<std::vector<std::string>> SimFs::ReadDir(const std::string& path) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("readdir", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino == 0) return Status::FromErrno("readdir " + path, ENOENT);
  const Node& n = impl_->cur[loc.ino];
  if (!n.is_dir) return Status::FromErrno("readdir " + path, ENOTDIR);
  std::vector<std::string> names;
  for (const auto& [name, ino] : n.entries) names.push_back(name);
  return names;
}

Result<FileInfo> SimFs::Stat(const std::string& path) {
  std::lock_guard<std::mutex> g(impl_->mu);
  HF_RETURN_IF_ERROR(impl_->Check("stat", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  if (loc.ino == 0) return Status::FromErrno("stat " + path, ENOENT);
  const Node& n = impl_->cur[loc.ino];
  FileInfo info;
  info.is_dir = n.is_dir;
  info.size = n.is_dir ? 0 : n.data.size();
  info.inode = loc.ino;
  info.mtime_ns = n.mtime;
  return info;
}

Result<std::unique_ptr<FileLock>> SimFs::LockFile(const std::string& path, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> g(impl_->mu);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  HF_RETURN_IF_ERROR(impl_->Check("lock", path));
  HF_ASSIGN_OR_RETURN(Loc loc, impl_->Resolve(path));
  uint64_t ino = loc.ino;
  if (ino == 0) {  // open(O_CREAT): only a create that happens is a mutating op
    PendingOp op;
    op.kind = OpKind::kCreate;
    op.ino = ino = impl_->next_ino++;
    op.dir = loc.parent;
    op.name = loc.name;
    op.desc = "create " + loc.path + " (lock file)";
    impl_->Mutate(std::move(op));
  } else if (impl_->cur[ino].is_dir) {
    return Status::FromErrno("lock " + path, EISDIR);
  }
  while (impl_->locks.count(ino) != 0) {
    if (impl_->cv.wait_until(g, deadline) == std::cv_status::timeout && impl_->locks.count(ino) != 0)
      return Status::Busy("lock " + loc.path + " still held after " + std::to_string(timeout.count()) + " ms");
    if (impl_->crashed) return Status::Crashed("lock " + path);
  }
  uint64_t token = impl_->next_owner++;
  impl_->locks[ino] = token;
  return std::unique_ptr<FileLock>(std::make_unique<SimFileLock>(impl_, ino, token));
}

void SimFs::SetCrashAfter(uint64_t n) {
  std::lock_guard<std::mutex> g(impl_->mu);
  impl_->crash_after = n;
  impl_->ops = 0;
}

bool SimFs::crashed() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->crashed;
}

uint64_t SimFs::MutatingOps() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->ops;
}

std::vector<std::string> SimFs::OpLog() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  return impl_->log;
}

std::vector<std::string> SimFs::PendingOps() const {
  std::lock_guard<std::mutex> g(impl_->mu);
  std::vector<std::string> out;
  for (const auto& op : impl_->pending) out.push_back(op.desc);
  return out;
}

std::string SimFs::BootId() {
  std::lock_guard<std::mutex> g(impl_->mu);
  return "sim-boot-" + std::to_string(impl_->boots);
}

std::unique_ptr<SimFs> SimFs::AfterCrash(const CrashChoice& choice) const {
  std::lock_guard<std::mutex> g(impl_->mu);
  const Impl& old = *impl_;
  std::vector<bool> kept(old.pending.size(), choice.mode == CrashChoice::Mode::kEverything);
  if (choice.mode == CrashChoice::Mode::kMask) kept = old.CloseDown(choice.keep);
  const int64_t torn_at = choice.torn_bytes >= 0 ? old.LastKeptAppend(kept) : -1;

  Image img = old.durable;
  for (size_t i = 0; i < old.pending.size(); ++i)
    if (kept[i]) Apply(old.pending[i], img, static_cast<int64_t>(i) == torn_at ? choice.torn_bytes : -1);

  // Whatever no surviving entry reaches is gone: files never durably named,
  // and the contents of directories that did not survive.
  std::set<uint64_t> reachable = {kRootIno};
  std::vector<uint64_t> todo = {kRootIno};
  while (!todo.empty()) {
    uint64_t d = todo.back();
    todo.pop_back();
    for (const auto& [name, ino] : img[d].entries)
      if (reachable.insert(ino).second && img[ino].is_dir) todo.push_back(ino);
  }
  auto fs = std::make_unique<SimFs>();
  Impl& fresh = *fs->impl_;
  fresh.cur.clear();
  for (auto& [ino, node] : img) {
    if (!reachable.count(ino)) continue;
    node.open_files = 0;
    auto live = old.cur.find(ino);
    if (live != old.cur.end()) node.mtime = live->second.mtime;
    fresh.cur[ino] = std::move(node);
  }
  fresh.durable = fresh.cur;
  fresh.next_ino = old.next_ino;  // inode numbers are never reused
  fresh.clock = old.clock;
  // kill -9 is not a reboot; a power loss is.
  fresh.boots = old.boots + (choice.mode == CrashChoice::Mode::kEverything ? 0 : 1);
  return fs;
}

std::vector<CrashChoice> SimFs::ChoicesToTest(uint64_t seed, int exhaustive_limit_bits, int samples) const {
  std::lock_guard<std::mutex> g(impl_->mu);
  const Impl& s = *impl_;
  using Mode = CrashChoice::Mode;
  std::vector<CrashChoice> out = {CrashChoice{Mode::kDurableOnly, {}, -1}, CrashChoice{Mode::kEverything, {}, -1}};
  const size_t p = s.pending.size();
  auto append_len = [&](int64_t i) { return i < 0 ? int64_t{0} : static_cast<int64_t>(s.pending[i].bytes.size()); };

  if (p <= static_cast<size_t>(std::max(exhaustive_limit_bits, 0)) && p < 31) {
    // Every subset; masks that close to the same kept set are one choice.
    std::set<std::vector<bool>> seen;
    for (uint64_t m = 0; m < (uint64_t{1} << p); ++m) {
      std::vector<bool> keep(p);
      for (size_t i = 0; i < p; ++i) keep[i] = (m >> i) & 1;
      std::vector<bool> kept = s.CloseDown(keep);
      if (!seen.insert(kept).second) continue;
      out.push_back(CrashChoice{Mode::kMask, kept, -1});
      const int64_t len = append_len(s.LastKeptAppend(kept));
      for (int64_t t : std::set<int64_t>{len / 2, 0})  // half (>= 1 once len >= 2), and nothing
        if (t < len) out.push_back(CrashChoice{Mode::kMask, kept, t});
    }
    return out;
  }
  std::mt19937_64 rng(seed);
  for (int k = 0; k < samples; ++k) {
    CrashChoice c{Mode::kMask, std::vector<bool>(p), -1};
    for (size_t i = 0; i < p; ++i) c.keep[i] = rng() & 1;
    if (rng() % 3 == 0) {
      const int64_t len = append_len(s.LastKeptAppend(s.CloseDown(c.keep)));
      if (len > 0) c.torn_bytes = static_cast<int64_t>(rng() % static_cast<uint64_t>(len));
    }
    out.push_back(std::move(c));
  }
  return out;
}

void SimFs::SyncEverything() {
  std::lock_guard<std::mutex> g(impl_->mu);
  impl_->MakeDurable(std::vector<bool>(impl_->pending.size(), true));
}

void SimFs::SetCapacity(uint64_t bytes) {
  std::lock_guard<std::mutex> g(impl_->mu);
  impl_->capacity = bytes;
}

void SimFs::FailNext(const std::string& op, int err) {
  std::lock_guard<std::mutex> g(impl_->mu);
  impl_->fail_next[op] = err;
}

}  // namespace holdfast
