// holdfast queue list|show ID: what is in the spool, read-only. Safe while
// the server runs: segments are only appended to, and a torn tail is read as
// the end of the segment.
// holdfast queue quarantine list|show|release|delete: the quarantine
// (spool/quarantine.h). Release and delete are single durable renames and
// unlinks, safe while the server runs; a running server takes a released
// message back within seconds, a stopped one at its next start.
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "spool/quarantine.h"
#include "spool/spool_log.h"

namespace holdfast::cli {
namespace {

struct QueueArgs {
  std::string id;
};

std::string Age(int64_t received_ms) {
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  int64_t s = std::max<int64_t>(0, (now - received_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

Result<std::vector<SpoolEntry>> Load(Context& ctx) {
  return SpoolLog::Inspect(ctx.fs(), JoinPath(ctx.data_dir(), "spool"));
}

int List(Context& ctx) {
  auto entries = Load(ctx);
  if (!entries.ok()) {
    if (entries.status().kind() == Status::Kind::kNotFound) {
      std::cout << "# spool empty\n";
      return EX_OK;
    }
    PrintError("queue list", entries.status().message());
    return ExitCodeFor(entries.status());
  }
  std::cout << "# " << entries->size() << " message(s) with recipients pending\n";
  for (const auto& e : *entries) {
    std::cout << e.msg.id.ToString() << "\t" << Age(e.msg.received_ms) << "\t" << e.msg.body.size() << "\t<"
              << e.msg.mail_from << ">";
    for (size_t i = 0; i < e.msg.rcpts.size(); ++i)
      std::cout << "\t" << e.msg.rcpts[i].address << "=" << RcptStateName(e.state[i]);
    std::cout << "\n";
  }
  return EX_OK;
}

int Show(Context& ctx, const QueueArgs& args) {
  auto id = MessageId::Parse(args.id);
  if (!id) {
    PrintError("queue show", "'" + args.id + "' is not a MessageId (26 characters)");
    return EX_USAGE;
  }
  auto entries = Load(ctx);
  if (!entries.ok()) {
    PrintError("queue show", entries.status().message());
    return ExitCodeFor(entries.status());
  }
  for (const auto& e : *entries) {
    if (e.msg.id != *id) continue;
    std::cout << "id:        " << e.msg.id.ToString() << "\n"
              << "received:  " << Age(e.msg.received_ms) << " ago from " << e.msg.client << " (helo " << e.msg.helo
              << ")\n"
              << "from:      <" << e.msg.mail_from << ">\n"
              << "size:      " << e.msg.body.size() << " bytes\n"
              << "segment:   " << e.segment << "\n";
    for (size_t i = 0; i < e.msg.rcpts.size(); ++i) {
      std::cout << "recipient: <" << e.msg.rcpts[i].address << "> user=" << e.msg.rcpts[i].user
                << (e.msg.rcpts[i].detail.empty() ? "" : " detail=" + e.msg.rcpts[i].detail) << " "
                << RcptStateName(e.state[i]) << "\n";
    }
    auto end = e.msg.body.find("\r\n\r\n");
    if (end == std::string::npos) end = e.msg.body.find("\n\n");
    std::cout << "\n" << e.msg.body.substr(0, std::min<size_t>(end == std::string::npos ? 4096 : end, 4096)) << "\n";
    return EX_OK;
  }
  PrintError("queue show", "no message " + id->ToString() + " in the spool (delivered messages leave it)");
  return EX_NOUSER;
}

Quarantine OpenQuarantine(Context& ctx) { return Quarantine(ctx.fs(), JoinPath(ctx.data_dir(), "quarantine")); }

std::string Headers(const std::string& body) {
  auto end = body.find("\r\n\r\n");
  if (end == std::string::npos) end = body.find("\n\n");
  return body.substr(0, std::min<size_t>(end == std::string::npos ? 4096 : end, 4096));
}

std::string Who() {
  const passwd* pw = ::getpwuid(::getuid());
  return pw != nullptr ? pw->pw_name : "uid " + std::to_string(::getuid());
}

int QuarantineList(Context& ctx) {
  auto entries = OpenQuarantine(ctx).List();
  if (!entries.ok()) {
    if (entries.status().kind() == Status::Kind::kNotFound) {
      std::cout << "# quarantine empty\n";
      return EX_OK;
    }
    PrintError("queue quarantine list", entries.status().message());
    return ExitCodeFor(entries.status());
  }
  std::cout << "# " << entries->size() << " message(s) in quarantine\n";
  for (const auto& e : *entries) {
    std::cout << e.msg.id.ToString() << "\t" << Age(e.quarantined_ms) << "\t" << e.msg.body.size() << "\t<"
              << e.msg.mail_from << ">";
    for (const auto& r : e.msg.rcpts) std::cout << "\t" << r.address;
    std::cout << "\t" << e.reason << "\n";
  }
  return EX_OK;
}

// The MessageId argument, or a usage error (printed) as nullopt.
std::optional<MessageId> ParseIdArg(const std::string& what, const std::string& arg) {
  auto id = MessageId::Parse(arg);
  if (!id) PrintError(what, "'" + arg + "' is not a MessageId (26 characters)");
  return id;
}

int QuarantineShow(Context& ctx, const QueueArgs& args) {
  auto id = ParseIdArg("queue quarantine show", args.id);
  if (!id) return EX_USAGE;
  auto e = OpenQuarantine(ctx).Get(*id);
  if (!e.ok()) {
    PrintError("queue quarantine show", e.status().kind() == Status::Kind::kNotFound
                                            ? "no message " + id->ToString() + " in the quarantine"
                                            : e.status().message());
    return e.status().kind() == Status::Kind::kNotFound ? EX_NOUSER : ExitCodeFor(e.status());
  }
  std::cout << "id:          " << e->msg.id.ToString() << "\n"
            << "quarantined: " << Age(e->quarantined_ms) << " ago\n"
            << "reason:      " << e->reason << "\n"
            << "received:    " << Age(e->msg.received_ms) << " ago from " << e->msg.client << " (helo "
            << e->msg.helo << ")\n"
            << "from:        <" << e->msg.mail_from << ">\n"
            << "size:        " << e->msg.body.size() << " bytes\n";
  for (const auto& r : e->msg.rcpts) std::cout << "recipient:   <" << r.address << "> user=" << r.user << "\n";
  for (size_t i = 0; i < e->history.size(); ++i) std::cout << "attempt " << i + 1 << ":   " << e->history[i] << "\n";
  std::cout << "\n" << Headers(e->msg.body) << "\n";
  return EX_OK;
}

int QuarantineAct(Context& ctx, const QueueArgs& args, bool release) {
  const std::string what = release ? "queue quarantine release" : "queue quarantine delete";
  auto id = ParseIdArg(what, args.id);
  if (!id) return EX_USAGE;
  Quarantine q = OpenQuarantine(ctx);
  Status s = release ? q.Release(*id, Who()) : q.Delete(*id, Who());
  if (!s.ok()) {
    PrintError(what, s.kind() == Status::Kind::kNotFound ? "no message " + id->ToString() + " in the quarantine"
                                                         : s.message());
    return s.kind() == Status::Kind::kNotFound ? EX_NOUSER : ExitCodeFor(s);
  }
  ctx.Record({Event(release ? "release_requested" : "quarantine_deleted", id->ToString()).Add("by", Who())});
  std::cout << id->ToString()
            << (release ? ": released; the server delivers it (filters skipped) within seconds, or at its next start\n"
                        : ": deleted (recorded in quarantine/audit.log)\n");
  return EX_OK;
}

}  // namespace

void AddQueueCommand(CLI::App& app, Runner* run) {
  CLI::App* queue = app.add_subcommand("queue", "Inspect the spool: messages accepted over LMTP and not yet in every mailbox.");
  queue->require_subcommand(1);
  auto args = std::make_shared<QueueArgs>();
  CLI::App* list = queue->add_subcommand("list", "One line per message: MessageId, age, size, sender, recipient=state...");
  list->callback([run] { *run = [](Context& c) { return List(c); }; });
  CLI::App* show = queue->add_subcommand("show", "Envelope, recipients' states and headers of one message.");
  show->add_option("id", args->id, "MessageId")->required();
  show->callback([run, args] { *run = [args](Context& c) { return Show(c, *args); }; });

  CLI::App* q = queue->add_subcommand(
      "quarantine", "Messages the filter stage set aside (a filter asked, or it failed K times): docs/filters.md.");
  q->require_subcommand(1);
  q->add_subcommand("list", "One line per message: MessageId, age, size, sender, recipients..., reason.")
      ->callback([run] { *run = [](Context& c) { return QuarantineList(c); }; });
  CLI::App* qshow = q->add_subcommand("show", "Reason, every failed attempt, envelope and headers of one message.");
  qshow->add_option("id", args->id, "MessageId")->required();
  qshow->callback([run, args] { *run = [args](Context& c) { return QuarantineShow(c, *args); }; });
  CLI::App* rel = q->add_subcommand("release", "Deliver it after all, skipping the filters (logged in quarantine/audit.log).");
  rel->add_option("id", args->id, "MessageId")->required();
  rel->callback([run, args] { *run = [args](Context& c) { return QuarantineAct(c, *args, true); }; });
  CLI::App* del = q->add_subcommand("delete", "Remove it for good (logged in quarantine/audit.log).");
  del->add_option("id", args->id, "MessageId")->required();
  del->callback([run, args] { *run = [args](Context& c) { return QuarantineAct(c, *args, false); }; });
}

}  // namespace holdfast::cli
