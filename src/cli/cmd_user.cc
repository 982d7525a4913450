// holdfast user add|passwd|del|list: the virtual users in DATA/users.
#include <unistd.h>

#include <iostream>

#include "cli/commands.h"
#include "users/password.h"
#include "users/users_file.h"

namespace holdfast::cli {
namespace {

struct UserArgs {
  std::string name;
  bool password_stdin = false;
};

// The password from stdin (first line, without its line ending), or a fresh
// random one that is printed once.
Result<std::string> ObtainPassword(const UserArgs& args, const std::string& who) {
  if (!args.password_stdin) {
    std::string pw = GeneratePassword();
    std::cout << "password for " << who << ": " << pw << "\n";
    return pw;
  }
  std::string line;
  if (!std::getline(std::cin, line) || line.empty()) {
    if (line.empty()) return Status::Invalid("no password on stdin");
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  HF_RETURN_IF_ERROR(CheckPassword(line));
  return line;
}

std::optional<UserName> ParseUser(const std::string& cmd, const std::string& raw) {
  auto name = UserName::Parse(raw);
  if (!name.ok()) {
    PrintError(cmd, name.status().message());
    return std::nullopt;
  }
  return *name;
}

int Report(const std::string& cmd, const Status& s) {
  if (s.ok()) return EX_OK;
  PrintError(cmd, s.message());
  switch (s.kind()) {
    case Status::Kind::kNotFound: return EX_NOUSER;
    case Status::Kind::kExists:
    case Status::Kind::kInvalid: return EX_USAGE;
    default: return ExitCodeFor(s);
  }
}

int Add(Context& ctx, const UserArgs& args) {
  const std::string cmd = "user add";
  auto parsed = ParseUser(cmd, args.name);
  if (!parsed) return EX_USAGE;
  const UserName& name = *parsed;
  Status layout = ctx.EnsureLayout();
  if (!layout.ok()) return Report(cmd, layout);
  UsersFile users(ctx.fs(), ctx.data_dir());
  auto existing = users.Find(name);
  if (!existing.ok()) return Report(cmd, existing.status());
  if (existing->has_value()) return Report(cmd, Status::Exists("user '" + name.str() + "' already exists"));
  auto pw = ObtainPassword(args, name.str());
  if (!pw.ok()) return Report(cmd, pw.status());
  auto hash = HashPassword(*pw);
  if (!hash.ok()) return Report(cmd, hash.status());
  // The Maildir first: a user in the file always has a mailbox to deliver to.
  Status s = Mailbox::Create(ctx.fs(), ctx.MailboxDir(name));
  if (s.ok()) s = users.Add(name, *hash);
  if (s.ok()) std::cerr << "holdfast user add: added '" << name.str() << "', mail in " << ctx.MailboxDir(name) << "\n";
  return Report(cmd, s);
}

int Passwd(Context& ctx, const UserArgs& args) {
  const std::string cmd = "user passwd";
  auto parsed = ParseUser(cmd, args.name);
  if (!parsed) return EX_USAGE;
  const UserName& name = *parsed;
  UsersFile users(ctx.fs(), ctx.data_dir());
  auto existing = users.Find(name);
  if (!existing.ok()) return Report(cmd, existing.status());
  if (!existing->has_value()) return Report(cmd, Status::NotFound("no such user '" + name.str() + "'"));
  auto pw = ObtainPassword(args, name.str());
  if (!pw.ok()) return Report(cmd, pw.status());
  auto hash = HashPassword(*pw);
  if (!hash.ok()) return Report(cmd, hash.status());
  return Report(cmd, users.SetPassword(name, *hash));
}

int Del(Context& ctx, const UserArgs& args) {
  const std::string cmd = "user del";
  auto parsed = ParseUser(cmd, args.name);
  if (!parsed) return EX_USAGE;
  const UserName& name = *parsed;
  UsersFile users(ctx.fs(), ctx.data_dir());
  Status s = users.Remove(name);
  if (s.ok()) {
    // Mail leaves a mailbox only by an explicit delete: the Maildir stays.
    std::cerr << "holdfast user del: removed '" << name.str() << "'; the mail is kept in "
              << ctx.MailboxDir(name) << " (remove it by hand if it is no longer wanted)\n";
  }
  return Report(cmd, s);
}

int List(Context& ctx) {
  UsersFile users(ctx.fs(), ctx.data_dir());
  auto all = users.List();
  if (!all.ok()) return Report("user list", all.status());
  for (const auto& u : *all) std::cout << u.name.str() << "\n";
  return EX_OK;
}

}  // namespace

void AddUserCommand(CLI::App& app, Runner* run) {
  CLI::App* user = app.add_subcommand("user", "Manage virtual users (DATA/users, Dovecot passwd-file format).");
  user->require_subcommand(1);
  auto args = std::make_shared<UserArgs>();
  auto add_name = [&args](CLI::App* sub, bool with_password) {
    sub->add_option("name", args->name, "user name (see docs/users.md for the rule)")->required();
    if (with_password)
      sub->add_flag("--password-stdin", args->password_stdin,
                    "read the password from the first line of stdin (otherwise a random one is generated and printed)");
  };
  CLI::App* add = user->add_subcommand("add", "Add a user and create the Maildir.");
  add_name(add, true);
  add->callback([run, args] { *run = [args](Context& c) { return Add(c, *args); }; });
  CLI::App* passwd = user->add_subcommand("passwd", "Change a user's password.");
  add_name(passwd, true);
  passwd->callback([run, args] { *run = [args](Context& c) { return Passwd(c, *args); }; });
  CLI::App* del = user->add_subcommand("del", "Remove a user (the Maildir is kept).");
  add_name(del, false);
  del->callback([run, args] { *run = [args](Context& c) { return Del(c, *args); }; });
  CLI::App* list = user->add_subcommand("list", "List user names, one a line.");
  list->callback([run] { *run = [](Context& c) { return List(c); }; });
}

}  // namespace holdfast::cli
