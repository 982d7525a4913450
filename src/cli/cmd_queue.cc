// holdfast queue list|show ID: what is in the spool, read-only. Safe while
// the server runs: segments are only appended to, and a torn tail is read as
// the end of the segment.
#include <chrono>
#include <iostream>

#include "cli/commands.h"
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
}

}  // namespace holdfast::cli
