#include "migrate/maildir_import.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "store/maildir_name.h"
#include "util/checksum.h"

namespace holdfast {
namespace {

constexpr size_t kMaxDetailLines = 100;
constexpr size_t kReadChunk = 1 << 16;

struct SourceFile {
  MaildirName name;
  MaildirDir dir;
  std::string file;  // name within new/ or cur/
};

// One readdir of new/ and cur/, by base name, in name order. A base in both
// (another tool's link+unlink move from new/ to cur/, interrupted) counts as
// in cur/, as the mailbox's own scan does.
Result<std::vector<SourceFile>> ScanSource(Fs& fs, const std::string& source) {
  std::map<std::string, SourceFile> by_base;
  for (MaildirDir d : {MaildirDir::kNew, MaildirDir::kCur}) {
    HF_ASSIGN_OR_RETURN(auto names, fs.ReadDir(JoinPath(source, SubdirName(d))));
    for (auto& n : names) {
      auto parsed = ParseMaildirName(n);
      if (!parsed) continue;  // dot files
      std::string base = parsed->base;
      by_base[base] = SourceFile{std::move(*parsed), d, std::move(n)};
    }
  }
  std::vector<SourceFile> out;
  out.reserve(by_base.size());
  for (auto& [base, f] : by_base) out.push_back(std::move(f));
  return out;
}

class Importer {
 public:
  Importer(Fs& fs, std::string source, Mailbox& box, const MaildirImportOptions& opts, MaildirImportReport* report)
      : fs_(fs), source_(std::move(source)), box_(box), opts_(opts), report_(report) {}

  Status ImportOne(const SourceFile& f) {
    const MessageId id = MaildirImportId(f.name.base);
    if (box_.Knows(id)) {
      ++report_->already_there;
      return Status::Ok();
    }
    const std::string rel = std::string(SubdirName(f.dir)) + "/" + f.file;
    auto file = fs_.OpenRead(JoinPath(source_, rel));
    if (!file.ok() && file.status().kind() == Status::Kind::kNotFound) {
      // Moved or removed by a live Maildir tool since the scan: a later run
      // finds it under its new name (same base, same id).
      return Skip(rel, "gone from the source during the import");
    }
    HF_RETURN_IF_ERROR(file.status());
    HF_ASSIGN_OR_RETURN(uint64_t size, (*file)->Size());
    if (size == 0) return Skip(rel, "empty");
    if (size > opts_.max_message_size) {
      return Skip(rel, "larger than delivery.max_message_size (" + std::to_string(opts_.max_message_size) +
                           " bytes)");
    }
    HF_ASSIGN_OR_RETURN(auto delivery, box_.BeginDelivery(id));
    std::string buf(kReadChunk, '\0');
    for (uint64_t done = 0; done < size;) {
      HF_ASSIGN_OR_RETURN(size_t n, (*file)->ReadAt(done, buf.data(), std::min<uint64_t>(buf.size(), size - done)));
      if (n == 0) return Status::Io(JoinPath(source_, rel) + " shrank while it was read");
      HF_RETURN_IF_ERROR(delivery->Write(std::string_view(buf.data(), n)));
      done += n;
    }
    // A flagged file in new/ (doveadm flags mail in place) has been seen by a
    // client all the same: it goes into cur/ with its flags.
    const bool flagged = f.name.flags.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos;
    delivery->SetPlacement(f.dir == MaildirDir::kNew && !flagged ? MaildirDir::kNew : MaildirDir::kCur,
                           f.name.flags);
    batch_.push_back(std::move(delivery));
    return batch_.size() >= opts_.batch ? CommitBatch() : Status::Ok();
  }

  // Commits what is written; every delivery is durable or not there.
  Status CommitBatch() {
    if (batch_.empty()) return Status::Ok();
    std::vector<Delivery*> ds;
    for (auto& d : batch_) ds.push_back(d.get());
    auto results = box_.CommitAll(ds);
    Status first_error;
    for (const auto& r : results) {
      if (r.ok()) {
        ++report_->imported;
      } else if (first_error.ok()) {
        first_error = r.status();
      }
    }
    batch_.clear();  // an uncommitted Delivery removes its tmp file as it goes
    return first_error;
  }

 private:
  Status Skip(const std::string& rel, const std::string& reason) {
    ++report_->skipped[reason];
    if (report_->skipped_detail.size() < kMaxDetailLines) report_->skipped_detail.push_back(rel + ": " + reason);
    return Status::Ok();
  }

  Fs& fs_;
  std::string source_;
  Mailbox& box_;
  const MaildirImportOptions& opts_;
  MaildirImportReport* report_;
  std::vector<std::unique_ptr<Delivery>> batch_;
};

}  // namespace

MessageId MaildirImportId(const std::string& base) {
  auto parsed = ParseMaildirName(base);
  if (parsed && parsed->id) return *parsed->id;
  Sha256 h;
  h.Update("holdfast-maildir-import:" + base);
  const auto full = h.Finish();
  std::array<uint8_t, 16> bytes{};
  std::copy_n(full.begin(), bytes.size(), bytes.begin());
  for (size_t i = 0; i < 6; ++i) bytes[i] = 0xff;  // the time field: "never expires"
  return MessageId::FromBytes(bytes);
}

Status ImportMaildir(Fs& fs, const std::string& source, Mailbox& box, const MaildirImportOptions& opts,
                     MaildirImportReport* report) {
  for (const char* sub : {"new", "cur"}) {
    auto info = fs.Stat(JoinPath(source, sub));
    if (!info.ok() && info.status().kind() == Status::Kind::kNotFound) {
      return Status::Invalid(source + " is not a Maildir (no " + sub + "/)");
    }
    HF_RETURN_IF_ERROR(info.status());
    if (!info->is_dir) return Status::Invalid(JoinPath(source, sub) + " is not a directory");
  }
  HF_ASSIGN_OR_RETURN(auto entries, fs.ReadDir(source));
  for (const auto& e : entries) {
    if (e.size() < 2 || e[0] != '.' || e == "..") continue;
    auto info = fs.Stat(JoinPath(source, e));
    if (info.ok() && info->is_dir) report->subfolders.push_back(e);
  }
  std::sort(report->subfolders.begin(), report->subfolders.end());

  // Two imports into one mailbox could both see a message missing and both
  // deliver it: one at a time (a lock dies with its holder, so a killed
  // import never locks out the next).
  auto lock = fs.LockFile(JoinPath(box.dir(), "holdfast-import.lock"), std::chrono::milliseconds(0));
  if (!lock.ok()) {
    if (lock.status().kind() == Status::Kind::kBusy) {
      return Status::Busy("another import into " + box.dir() + " is running");
    }
    return lock.status();
  }
  // Confirms copies an interrupted run left (see ImportMbox).
  HF_RETURN_IF_ERROR(box.Refresh(true));
  HF_ASSIGN_OR_RETURN(auto files, ScanSource(fs, source));
  Importer importer(fs, source, box, opts, report);
  for (size_t i = 0; i < files.size(); ++i) {
    HF_RETURN_IF_ERROR(importer.ImportOne(files[i]));
    if (opts.progress) opts.progress(i + 1, files.size());
  }
  return importer.CommitBatch();
}

}  // namespace holdfast
