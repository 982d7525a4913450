#include "pop3/maildrop.h"

namespace holdfast::pop3 {

Result<std::unique_ptr<Maildrop>> Maildrop::Open(Fs& fs, const std::string& maildir, MailboxOptions opts,
                                                 std::unique_ptr<Mailbox> reuse) {
  HF_RETURN_IF_ERROR(Mailbox::Create(fs, maildir));
  // No waiting: a second login is told [IN-USE] at once (RFC 2449).
  auto lock = fs.LockFile(JoinPath(maildir, kLockFile), std::chrono::milliseconds(0));
  if (!lock.ok()) {
    if (lock.status().kind() == Status::Kind::kBusy) return Status::Busy("maildrop in use by another session");
    return lock.status();
  }
  std::unique_ptr<Mailbox> box = std::move(reuse);
  if (!box || box->dir() != maildir) {
    // From the index checkpoint when there is a good one: a fresh process
    // then lists without replaying the journal (docs/storage.md).
    HF_ASSIGN_OR_RETURN(box, Mailbox::OpenForListing(fs, maildir, std::move(opts)));
  }
  HF_ASSIGN_OR_RETURN(auto entries, box->ListRefs());
  return std::unique_ptr<Maildrop>(
      new Maildrop(fs, std::move(lock).value(), std::move(box), std::move(entries)));
}

std::unique_ptr<Mailbox> Maildrop::Close(std::unique_ptr<Maildrop> drop) {
  if (!drop) return nullptr;
  drop->lock_.reset();
  return std::move(drop->box_);
}

std::vector<MessageInfo> Maildrop::Listing() const {
  std::vector<MessageInfo> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(MessageInfo{e.network_size, e.id.ToString()});
  return out;
}

Result<std::unique_ptr<File>> Maildrop::OpenMessage(size_t n) {
  if (n == 0 || n > entries_.size()) return Status::Invalid("no message " + std::to_string(n));
  const MessageRef& e = entries_[n - 1];
  auto path = box_->PathOf(e.uid, e.id);
  if (path.ok()) {
    auto f = fs_.OpenRead(*path);
    if (f.ok() || f.status().kind() != Status::Kind::kNotFound) return f;
  }
  // Renamed by another Maildir tool (new/ -> cur/, flags): catch up with the
  // directory and look it up again, by UID and identity.
  HF_RETURN_IF_ERROR(box_->Refresh());
  path = box_->PathOf(e.uid, e.id);
  if (path.ok()) return fs_.OpenRead(*path);
  return Status::NotFound("message " + std::to_string(n) + " was removed by another program");
}

Status Maildrop::Commit(const std::vector<size_t>& numbers,
                        const std::function<void(const std::vector<MessageId>&)>& committed) {
  std::vector<ExpungeTarget> targets;
  for (size_t n : numbers) {
    if (n == 0 || n > entries_.size()) return Status::Invalid("no message " + std::to_string(n));
    targets.push_back(ExpungeTarget{entries_[n - 1].uid, entries_[n - 1].id});
  }
  if (targets.empty()) return Status::Ok();
  return box_->Expunge(targets, committed);
}

}  // namespace holdfast::pop3
