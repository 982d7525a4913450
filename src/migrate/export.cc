#include "migrate/export.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>

#include "util/checksum.h"

namespace holdfast {
namespace {

constexpr size_t kReadChunk = 1 << 16;
constexpr size_t kBatch = 64;  // files synced together, then renamed, then one directory sync

// Opens the file of `e`, which a Maildir tool may have renamed (new/ -> cur/,
// flags) since the listing: then it is found again through a fresh listing.
// nullopt: the message was deleted meanwhile.
Result<std::optional<std::pair<IndexEntry, std::unique_ptr<File>>>> OpenMessage(Fs& fs, Mailbox& box,
                                                                                const IndexEntry& e) {
  auto file = fs.OpenRead(e.Path(box.dir()));
  if (file.ok()) return std::make_optional(std::make_pair(e, std::move(*file)));
  if (file.status().kind() != Status::Kind::kNotFound) return file.status();
  HF_ASSIGN_OR_RETURN(auto list, box.List());
  for (const auto& now : list) {
    if (now.uid != e.uid) continue;
    auto again = fs.OpenRead(now.Path(box.dir()));
    if (again.ok()) return std::make_optional(std::make_pair(now, std::move(*again)));
    if (again.status().kind() != Status::Kind::kNotFound) return again.status();
  }
  return std::optional<std::pair<IndexEntry, std::unique_ptr<File>>>();
}

// Reads the whole file in chunks, handing each to `sink`; then checks the
// bytes against the index (size and SHA-256). Ok(false): damaged.
template <typename Sink>
Result<bool> CopyVerified(File& file, const IndexEntry& e, Sink&& sink) {
  Sha256 sha;
  std::string buf(kReadChunk, '\0');
  uint64_t done = 0;
  for (;;) {
    HF_ASSIGN_OR_RETURN(size_t n, file.ReadAt(done, buf.data(), buf.size()));
    if (n == 0) break;
    std::string_view piece(buf.data(), n);
    sha.Update(piece);
    HF_RETURN_IF_ERROR(sink(piece));
    done += n;
  }
  return done == e.size && sha.Finish() == e.sha256;
}

std::string DamagedLine(const IndexEntry& e) {
  return "uid " + std::to_string(e.uid) + " " + e.name + ": size or checksum differs from the index (run holdfast fsck)";
}

// DEST: created, or an existing empty directory; then tmp/ new/ cur/, durably.
Status PrepareMaildir(Fs& fs, const std::string& dest) {
  auto info = fs.Stat(dest);
  if (info.ok()) {
    if (!info->is_dir) return Status::Exists(dest + " exists and is not a directory");
    HF_ASSIGN_OR_RETURN(auto names, fs.ReadDir(dest));
    if (!names.empty()) return Status::Exists(dest + " is not empty");
  } else if (info.status().kind() == Status::Kind::kNotFound) {
    HF_RETURN_IF_ERROR(fs.MkDir(dest, 0700));
    HF_RETURN_IF_ERROR(fs.SyncDir(DirName(dest)));
  } else {
    return info.status();
  }
  for (const char* sub : {"tmp", "new", "cur"}) HF_RETURN_IF_ERROR(fs.MkDir(JoinPath(dest, sub), 0700));
  return fs.SyncDir(dest);
}

struct Pending {
  std::unique_ptr<File> file;
  std::string tmp;    // path in dest/tmp
  std::string final;  // path in dest/new or dest/cur
};

// Syncs the files' data, renames them into place, syncs the directories.
Status Finish(Fs& fs, const std::string& dest, std::vector<Pending>* pending, ExportReport* report) {
  if (pending->empty()) return Status::Ok();
  std::vector<File*> files;
  for (auto& p : *pending) files.push_back(p.file.get());
  for (const Status& s : fs.SyncDataAll(files)) HF_RETURN_IF_ERROR(s);
  for (auto& p : *pending) {
    p.file.reset();
    HF_RETURN_IF_ERROR(fs.Link(p.tmp, p.final));  // link: never replaces a file already there
    HF_RETURN_IF_ERROR(fs.Unlink(p.tmp));
  }
  for (const char* sub : {"new", "cur", "tmp"}) HF_RETURN_IF_ERROR(fs.SyncDir(JoinPath(dest, sub)));
  report->exported += pending->size();
  pending->clear();
  return Status::Ok();
}

}  // namespace

std::string ExportReport::Summary() const {
  std::string s = "exported " + std::to_string(exported);
  if (vanished > 0) s += ", " + std::to_string(vanished) + " deleted meanwhile";
  if (!damaged.empty()) s += ", " + std::to_string(damaged.size()) + " damaged (not exported)";
  if (newline_added > 0) s += ", " + std::to_string(newline_added) + " given a final newline";
  return s;
}

void MboxQuoter::Feed(std::string_view in, std::string* out) {
  static constexpr std::string_view kFrom = "From ";
  size_t i = 0;
  while (i < in.size()) {
    if (!line_start_) {
      size_t nl = in.find('\n', i);
      size_t end = nl == std::string_view::npos ? in.size() : nl + 1;
      out->append(in.substr(i, end - i));
      line_start_ = nl != std::string_view::npos;
      i = end;
      continue;
    }
    const char c = in[i++];
    if (matched_ == 0 && c == '>') {
      ++quotes_;
      continue;
    }
    if (c == kFrom[matched_]) {
      if (++matched_ < kFrom.size()) continue;
      // A "From " line (mboxo), or a ">*From " line (mboxrd): one more '>'.
      if (!mboxo_ || quotes_ == 0) out->push_back('>');
      out->append(quotes_, '>');
      out->append(kFrom);
      quotes_ = 0;
      matched_ = 0;
      line_start_ = false;
      continue;
    }
    out->append(quotes_, '>');
    out->append(kFrom.substr(0, matched_));
    out->push_back(c);
    quotes_ = 0;
    matched_ = 0;
    line_start_ = (c == '\n');
  }
}

void MboxQuoter::Finish(std::string* out) {
  out->append(quotes_, '>');
  out->append(std::string_view("From ").substr(0, matched_));
  quotes_ = 0;
  matched_ = 0;
  line_start_ = true;
}

std::string EnvelopeSender(std::string_view head) {
  size_t pos = 0;
  while (pos < head.size()) {
    size_t nl = head.find('\n', pos);
    std::string_view line = head.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    constexpr std::string_view kName = "return-path:";
    if (line.size() >= kName.size() &&
        std::equal(kName.begin(), kName.end(), line.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      std::string_view v = line.substr(kName.size());
      auto lt = v.find('<');
      auto gt = v.find('>', lt == std::string_view::npos ? 0 : lt);
      if (lt != std::string_view::npos && gt != std::string_view::npos) v = v.substr(lt + 1, gt - lt - 1);
      std::string addr;
      for (char c : v) {
        if (static_cast<unsigned char>(c) > ' ' && c != 0x7f) addr += c;  // one word on the envelope line
      }
      return addr.empty() ? "MAILER-DAEMON" : addr;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return "MAILER-DAEMON";
}

std::string EnvelopeDate(int64_t unix_secs) {
  std::time_t t = static_cast<std::time_t>(unix_secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
  return buf;
}

Status ExportMaildir(Fs& fs, Mailbox& box, const std::string& dest, const ExportOptions& opts,
                     ExportReport* report) {
  HF_ASSIGN_OR_RETURN(auto list, box.List());
  HF_RETURN_IF_ERROR(PrepareMaildir(fs, dest));
  std::vector<Pending> pending;
  for (size_t i = 0; i < list.size(); ++i) {
    HF_ASSIGN_OR_RETURN(auto opened, OpenMessage(fs, box, list[i]));
    if (!opened) {
      ++report->vanished;
    } else {
      const IndexEntry& e = opened->first;
      const std::string base = e.Base();
      Pending p;
      p.tmp = JoinPath(JoinPath(dest, "tmp"), base);
      p.final = JoinPath(JoinPath(dest, SubdirName(e.dir)), e.name);
      HF_ASSIGN_OR_RETURN(p.file, fs.CreateExclusive(p.tmp, 0600));
      HF_ASSIGN_OR_RETURN(bool whole, CopyVerified(*opened->second, e, [&p](std::string_view piece) {
                            return p.file->Append(piece);
                          }));
      if (whole) {
        pending.push_back(std::move(p));
      } else {
        report->damaged.push_back(DamagedLine(e));
        p.file.reset();
        HF_RETURN_IF_ERROR(fs.Unlink(p.tmp));
      }
    }
    if (pending.size() >= kBatch) HF_RETURN_IF_ERROR(Finish(fs, dest, &pending, report));
    if (opts.progress) opts.progress(i + 1, list.size());
  }
  return Finish(fs, dest, &pending, report);
}

Status ExportMbox(Fs& fs, Mailbox& box, const std::string& dest, const ExportOptions& opts, ExportReport* report) {
  HF_ASSIGN_OR_RETURN(auto list, box.List());
  HF_ASSIGN_OR_RETURN(auto out, fs.CreateExclusive(dest, 0600));
  HF_RETURN_IF_ERROR(fs.SyncDir(DirName(dest)));
  uint64_t written = 0;  // bytes of `dest` so far
  std::string buf;
  auto flush = [&]() -> Status {
    if (buf.empty()) return Status::Ok();
    HF_RETURN_IF_ERROR(out->Append(buf));
    written += buf.size();
    buf.clear();
    return Status::Ok();
  };
  for (size_t i = 0; i < list.size(); ++i) {
    HF_ASSIGN_OR_RETURN(auto opened, OpenMessage(fs, box, list[i]));
    if (!opened) {
      ++report->vanished;
      continue;
    }
    const IndexEntry& e = opened->first;
    File& file = *opened->second;
    const uint64_t start = written;
    std::string head(std::min<uint64_t>(e.size, kReadChunk), '\0');
    HF_ASSIGN_OR_RETURN(size_t n, file.ReadAt(0, head.data(), head.size()));
    head.resize(n);
    HF_ASSIGN_OR_RETURN(FileInfo info, fs.Stat(e.Path(box.dir())));
    buf += "From " + EnvelopeSender(head) + " " + EnvelopeDate(info.mtime_ns / 1000000000) + "\n";
    // A message without a final newline gets one: in an mbox only the last
    // message of the file could end without (docs/migration.md).
    const auto first_nl = head.find('\n');
    const bool crlf = first_nl != std::string::npos && first_nl > 0 && head[first_nl - 1] == '\r';
    MboxQuoter quoter(opts.mboxo);
    char last = '\n';
    HF_ASSIGN_OR_RETURN(bool whole, CopyVerified(file, e, [&](std::string_view piece) -> Status {
                          quoter.Feed(piece, &buf);
                          last = piece.back();
                          return buf.size() >= kReadChunk ? flush() : Status::Ok();
                        }));
    quoter.Finish(&buf);
    if (!whole) {
      // Never exported: cut what was written of it.
      report->damaged.push_back(DamagedLine(e));
      HF_RETURN_IF_ERROR(flush());
      HF_RETURN_IF_ERROR(out->Truncate(start));
      written = start;
      continue;
    }
    if (last != '\n') {
      buf += (crlf && last != '\r') ? "\r\n" : "\n";
      ++report->newline_added;
    }
    buf += "\n";  // the separator
    ++report->exported;
    if (opts.progress) opts.progress(i + 1, list.size());
  }
  HF_RETURN_IF_ERROR(flush());
  return out->Sync();
}

}  // namespace holdfast
