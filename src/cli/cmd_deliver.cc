// holdfast deliver: the local delivery agent. The message arrives on stdin;
// exit 0 means it is durable in the user's Maildir, anything else means it
// is not there at all (whole or invisible), with one line on stderr.
#include <unistd.h>

#include <cstdlib>

#include "cli/commands.h"
#include "core/trace_headers.h"
#include "users/users_file.h"

namespace holdfast::cli {
namespace {

constexpr size_t kChunk = 1 << 16;
constexpr size_t kMaxSenderLength = 998;

struct DeliverArgs {
  std::string user;
  std::string sender;
};

// Reads up to `max` bytes from stdin; returns fewer only at end of input.
Result<std::string> ReadStdin(size_t max) {
  std::string buf(max, '\0');
  size_t got = 0;
  while (got < max) {
    ssize_t n = ::read(STDIN_FILENO, buf.data() + got, max - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("reading the message from stdin", errno);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

int Deliver(Context& ctx, const DeliverArgs& args) {
  const std::string cmd = "deliver";
  auto user = UserName::Parse(args.user);
  if (!user.ok()) {
    PrintError(cmd, "no such user '" + args.user + "' (" + user.status().message() + ")");
    return EX_NOUSER;
  }
  std::string sender = args.sender;
  if (sender.empty()) {
    const char* env = std::getenv("SENDER");  // what Postfix's local(8) exports
    sender = env != nullptr ? env : "MAILER-DAEMON";
  }
  if (sender == "<>") sender.clear();
  if (sender.size() > kMaxSenderLength || sender.find_first_of(std::string("\r\n\0<>", 5)) != std::string::npos) {
    PrintError(cmd, "sender address is unusable (control characters, '<', '>' or over 998 bytes)");
    return EX_USAGE;
  }

  UsersFile users(ctx.fs(), ctx.data_dir());
  auto found = users.Find(*user);
  if (!found.ok()) {
    PrintError(cmd, "cannot read the users file: " + found.status().message());
    return EX_TEMPFAIL;
  }
  if (!found->has_value()) {
    PrintError(cmd, "no such user '" + user->str() + "'");
    return EX_NOUSER;
  }

  const uint64_t limit = static_cast<uint64_t>(ctx.config().delivery.max_message_size);
  auto first = ReadStdin(kChunk);
  if (!first.ok()) {
    PrintError(cmd, first.status().message());
    return EX_TEMPFAIL;
  }
  if (first->empty()) {
    PrintError(cmd, "empty message on stdin: nothing delivered");
    return EX_DATAERR;
  }
  // The added headers take the line ending of the first line: read until it
  // ends (a first line can be longer than one read). Past 1 MiB without a
  // line end the message is not a mail header anyway: LF it is.
  constexpr size_t kFirstLineWait = 1 << 20;
  while (first->find('\n') == std::string::npos && first->size() <= std::min<uint64_t>(limit, kFirstLineWait)) {
    auto more = ReadStdin(kChunk);
    if (!more.ok()) {
      PrintError(cmd, more.status().message());
      return EX_TEMPFAIL;
    }
    if (more->empty()) break;
    first->append(*more);
  }

  const std::string message_id = HeaderValue(*first, "Message-ID");
  auto box = ctx.OpenMailboxForDelivery(*user);
  if (!box.ok()) {
    PrintError(cmd, "cannot open the mailbox of '" + user->str() + "': " + box.status().message());
    return EX_TEMPFAIL;
  }
  auto delivery = (*box)->BeginDelivery();
  if (!delivery.ok()) {
    PrintError(cmd, "cannot start the delivery: " + delivery.status().message());
    return EX_TEMPFAIL;
  }
  // From here an early return drops the Delivery, which removes its tmp file.
  const TraceOptions trace{ctx.config().delivery.add_return_path, ctx.config().delivery.add_delivered_to};
  Status s = (*delivery)->Write(TraceHeaders(*first, sender, user->str(), trace));
  uint64_t body = 0;
  std::string chunk = std::move(first).value();
  while (s.ok() && !chunk.empty()) {
    body += chunk.size();
    if (body > limit) {
      PrintError(cmd, "message larger than the limit of " + std::to_string(limit) +
                          " bytes (delivery.max_message_size): nothing delivered");
      return EX_DATAERR;
    }
    s = (*delivery)->Write(chunk);
    if (!s.ok()) break;
    auto next = ReadStdin(kChunk);
    if (!next.ok()) {
      s = next.status();
      break;
    }
    chunk = std::move(next).value();
  }
  if (!s.ok()) {
    PrintError(cmd, "delivery failed, nothing delivered: " + s.message());
    return EX_TEMPFAIL;
  }
  auto done = (*delivery)->Commit();
  if (!done.ok()) {
    PrintError(cmd, "delivery failed, nothing delivered: " + done.status().message());
    return EX_TEMPFAIL;
  }
  const std::string id = done->id.ToString();
  ctx.Record({Event("received", id)
                  .Add("client", "local")
                  .Add("via", "holdfast deliver")
                  .Add("from", sender)
                  .Add("to", user->str())
                  .Add("size", std::to_string(body))
                  .Add("message_id", message_id),
              Event("delivered", id)
                  .Add("user", user->str())
                  .Add("folder", "")
                  .Add("uid", std::to_string(done->uid))
                  .Add("file", done->name)});
  return EX_OK;
}

}  // namespace

void AddDeliverCommand(CLI::App& app, Runner* run) {
  auto args = std::make_shared<DeliverArgs>();
  CLI::App* sub = app.add_subcommand(
      "deliver",
      "Deliver one message from stdin into USER's Maildir.\n"
      "Exit codes (sysexits.h): 0 delivered and durable; 65 unusable input (empty, over the size limit);\n"
      "67 unknown user; 75 temporary failure (disk full, I/O error, lock timeout) -- retry later.\n"
      "On any non-zero exit nothing of the message is left in the mailbox.");
  sub->add_option("-u,--user", args->user, "recipient user name")->required();
  sub->add_option("-f,--from", args->sender, "envelope sender for Return-Path: (default: $SENDER, else MAILER-DAEMON; '<>' for none)");
  sub->callback([run, args] { *run = [args](Context& ctx) { return Deliver(ctx, *args); }; });
}

}  // namespace holdfast::cli
