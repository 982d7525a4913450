#include "cli/context.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "users/users_file.h"

namespace holdfast::cli {

Context::Context(GlobalOptions opts) : opts_(std::move(opts)) {
  data_dir_ = opts_.data_dir;
  if (data_dir_.empty()) {
    const char* env = std::getenv("HOLDFAST_DATA");
    data_dir_ = (env != nullptr && *env != '\0') ? env : "./data";
  }
}

int Context::Init() {
  auto config = ResolveConfig(fs(), data_dir_, opts_.config_path);
  if (!config.ok()) {
    PrintError("config", config.status().message());
    return EX_CONFIG;
  }
  config_ = std::move(config).value();
  SetPosixBatchSync(config_.delivery.batch_syncfs() ? BatchSync::kSyncfs : BatchSync::kFdatasync);
  return EX_OK;
}

std::string Context::MailboxDir(const UserName& user) const {
  return JoinPath(JoinPath(data_dir_, "mail"), user.str());
}

MailboxOptions Context::MailboxOpts() const {
  MailboxOptions o;
  o.hostname = config_.hostname;
  o.lock_timeout = std::chrono::milliseconds(config_.delivery.lock_timeout_ms);
  return o;
}

Status Context::EnsureLayout() {
  // Like mkdir -p: missing parents of DATA first, outermost first.
  std::vector<std::string> parents;
  for (std::string d = DirName(data_dir_); d != "/" && d != "." && !fs().Stat(d).ok(); d = DirName(d)) {
    parents.push_back(d);
  }
  for (auto it = parents.rbegin(); it != parents.rend(); ++it) {
    Status s = fs().MkDir(*it, 0755);
    if (!s.ok() && s.kind() != Status::Kind::kExists) return s;
    if (s.ok()) HF_RETURN_IF_ERROR(fs().SyncDir(DirName(*it)));
  }
  for (const std::string& dir : {data_dir_, JoinPath(data_dir_, "mail")}) {
    Status s = fs().MkDir(dir, 0700);
    if (s.ok()) {
      HF_RETURN_IF_ERROR(fs().SyncDir(DirName(dir)));
    } else if (s.kind() != Status::Kind::kExists) {
      return s;
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Mailbox>> Context::OpenMailbox(const UserName& user) {
  HF_RETURN_IF_ERROR(EnsureLayout());
  HF_RETURN_IF_ERROR(Mailbox::Create(fs(), MailboxDir(user)));
  return Mailbox::Open(fs(), MailboxDir(user), MailboxOpts());
}

Result<std::unique_ptr<Mailbox>> Context::OpenMailboxForDelivery(const UserName& user) {
  HF_RETURN_IF_ERROR(EnsureLayout());
  HF_RETURN_IF_ERROR(Mailbox::Create(fs(), MailboxDir(user)));
  return Mailbox::OpenForDelivery(fs(), MailboxDir(user), MailboxOpts());
}

void Context::Record(std::vector<Event> events) {
  if (!events_ && !events_failed_) {
    EventLog::Options o;
    o.retention_days = config_.events.retention_days;
    o.sync_interval = std::chrono::milliseconds(config_.events.sync_interval_ms);
    auto opened = EventLog::Open(fs(), JoinPath(data_dir_, EventLog::kDirName), o);
    if (opened.ok()) {
      events_ = std::move(opened).value();
    } else {
      events_failed_ = true;
      std::fprintf(stderr, "holdfast: warning: no event log for `holdfast trace`: %s\n",
                   opened.status().ToString().c_str());
    }
  }
  if (events_) events_->Append(std::move(events));
}

void PrintError(const std::string& cmd, const std::string& message) {
  std::fprintf(stderr, "holdfast %s: %s\n", cmd.c_str(), message.c_str());
}

int ExitCodeFor(const Status& s) {
  switch (s.kind()) {
    case Status::Kind::kOk: return EX_OK;
    case Status::Kind::kInvalid: return EX_DATAERR;
    default: return EX_TEMPFAIL;
  }
}

std::optional<UserName> FindExistingUser(Context& ctx, const std::string& cmd, const std::string& name, int* rc) {
  auto user = UserName::Parse(name);
  if (!user.ok()) {
    PrintError(cmd, "no such user '" + name + "' (" + user.status().message() + ")");
    *rc = EX_NOUSER;
    return std::nullopt;
  }
  UsersFile users(ctx.fs(), ctx.data_dir());
  auto found = users.Find(*user);
  if (!found.ok()) {
    PrintError(cmd, "cannot read the users file: " + found.status().message());
    *rc = EX_TEMPFAIL;
    return std::nullopt;
  }
  if (!found->has_value()) {
    PrintError(cmd, "no such user '" + user->str() + "'");
    *rc = EX_NOUSER;
    return std::nullopt;
  }
  return *user;
}

}  // namespace holdfast::cli
