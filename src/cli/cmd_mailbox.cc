// holdfast mailbox list USER: what the index says is in a mailbox.
#include <iostream>

#include "cli/commands.h"

namespace holdfast::cli {
namespace {

struct MailboxArgs {
  std::string user;
  bool json = false;
};

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

int ListMailbox(Context& ctx, const MailboxArgs& args) {
  const std::string cmd = "mailbox list";
  auto user = UserName::Parse(args.user);
  if (!user.ok()) {
    PrintError(cmd, user.status().message());
    return EX_USAGE;
  }
  auto st = ctx.fs().Stat(ctx.MailboxDir(*user));
  if (!st.ok()) {
    PrintError(cmd, "no mailbox for '" + user->str() + "'");
    return EX_NOUSER;
  }
  auto box = ctx.OpenMailbox(*user);
  if (!box.ok()) {
    PrintError(cmd, box.status().message());
    return ExitCodeFor(box.status());
  }
  auto entries = (*box)->List();
  if (!entries.ok()) {
    PrintError(cmd, entries.status().message());
    return ExitCodeFor(entries.status());
  }
  if (args.json) {
    std::cout << "[";
    bool first = true;
    for (const auto& e : *entries) {
      std::cout << (first ? "\n" : ",\n") << "  {\"uid\": " << e.uid << ", \"message_id\": \"" << e.id.ToString()
                << "\", \"size\": " << e.size << ", \"vsize\": " << e.vsize << ", \"flags\": " << JsonString(e.Flags())
                << ", \"name\": " << JsonString(std::string(SubdirName(e.dir)) + "/" + e.name)
                << ", \"sha256\": \"" << HexEncode(e.sha256) << "\"}";
      first = false;
    }
    std::cout << (first ? "]\n" : "\n]\n");
    return EX_OK;
  }
  std::cout << "# uidvalidity " << (*box)->uidvalidity() << ", " << entries->size() << " messages\n";
  for (const auto& e : *entries) {
    std::cout << e.uid << "\t" << e.id.ToString() << "\t" << e.size << "\t" << (e.Flags().empty() ? "-" : e.Flags())
              << "\t" << SubdirName(e.dir) << "/" << e.name << "\n";
  }
  return EX_OK;
}

}  // namespace

void AddMailboxCommand(CLI::App& app, Runner* run) {
  CLI::App* mailbox = app.add_subcommand("mailbox", "Inspect mailboxes.");
  mailbox->require_subcommand(1);
  auto args = std::make_shared<MailboxArgs>();
  CLI::App* list = mailbox->add_subcommand(
      "list", "List USER's messages from the index: UID, MessageId, size, flags, file (tab-separated).");
  list->add_option("user", args->user, "user name")->required();
  list->add_flag("--json", args->json, "print a JSON array of {uid, message_id, size, vsize, flags, name, sha256}");
  list->callback([run, args] { *run = [args](Context& c) { return ListMailbox(c, *args); }; });
}

}  // namespace holdfast::cli
