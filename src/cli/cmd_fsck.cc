// holdfast fsck [--repair] [USER...]: verify every message against its
// checksum and every index against its directory.
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "users/users_file.h"

namespace holdfast::cli {
namespace {

struct FsckArgs {
  std::vector<std::string> users;
  bool repair = false;
};

// Users to check: those named, else every user in DATA/users and every
// directory under DATA/mail (a mailbox whose user was deleted is checked too).
Result<std::vector<UserName>> Targets(Context& ctx, const FsckArgs& args) {
  std::vector<UserName> out;
  if (!args.users.empty()) {
    for (const auto& raw : args.users) {
      HF_ASSIGN_OR_RETURN(UserName n, UserName::Parse(raw));
      out.push_back(n);
    }
    return out;
  }
  UsersFile users(ctx.fs(), ctx.data_dir());
  HF_ASSIGN_OR_RETURN(auto records, users.List());
  for (const auto& r : records) out.push_back(r.name);
  auto dirs = ctx.fs().ReadDir(JoinPath(ctx.data_dir(), "mail"));
  if (dirs.ok()) {
    for (const auto& d : *dirs) {
      auto n = UserName::Parse(d);
      if (n.ok() && std::find(out.begin(), out.end(), *n) == out.end()) out.push_back(*n);
    }
  }
  return out;
}

int Fsck(Context& ctx, const FsckArgs& args) {
  const std::string cmd = "fsck";
  auto targets = Targets(ctx, args);
  if (!targets.ok()) {
    PrintError(cmd, targets.status().message());
    return EX_DATAERR;
  }
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  bool damage_left = false;
  for (const UserName& user : *targets) {
    if (!ctx.fs().Stat(ctx.MailboxDir(user)).ok()) {
      std::cout << user.str() << ": no mailbox yet\n";
      continue;
    }
    auto box = Mailbox::Open(ctx.fs(), ctx.MailboxDir(user), ctx.MailboxOpts());
    if (!box.ok()) {
      std::cout << user.str() << ": cannot open: " << box.status().ToString() << "\n";
      damage_left = true;
      continue;
    }
    auto progress = [&](size_t done, size_t total) {
      if (!tty || total == 0) return;
      int width = 30, filled = static_cast<int>(width * done / total);
      std::cout << "\r" << user.str() << " [" << std::string(filled, '#') << std::string(width - filled, ' ') << "] "
                << done << "/" << total << std::flush;
      if (done == total) std::cout << "\r\033[K" << std::flush;
    };
    auto report = (*box)->Fsck(args.repair, progress);
    if (!report.ok()) {
      std::cout << user.str() << ": fsck failed: " << report.status().ToString() << "\n";
      damage_left = true;
      continue;
    }
    for (const auto& r : report->repairs) std::cout << user.str() << ": repaired: " << r << "\n";
    for (const auto& p : report->problems) std::cout << user.str() << ": PROBLEM: " << p << "\n";
    std::cout << user.str() << ": " << report->messages_checked << " messages checked, "
              << (report->clean() ? "clean" : std::to_string(report->problems.size()) + " problem(s)") << "\n";
    if (!report->clean()) damage_left = true;
  }
  if (damage_left && !args.repair) std::cout << "run 'holdfast fsck --repair' to set damaged messages aside\n";
  return damage_left ? 1 : EX_OK;
}

}  // namespace

void AddFsckCommand(CLI::App& app, Runner* run) {
  auto args = std::make_shared<FsckArgs>();
  CLI::App* sub = app.add_subcommand(
      "fsck",
      "Verify every message against its size and SHA-256 and every index against its Maildir.\n"
      "Interrupted operations are finished or rolled back, and a damaged index is rebuilt, in any case.\n"
      "With --repair, damaged messages are moved to MAILDIR/holdfast-damaged/ (never deleted).\n"
      "Exit 0 when no damage remains, 1 otherwise.");
  sub->add_option("users", args->users, "users to check (default: all)");
  sub->add_flag("--repair", args->repair, "set damaged messages aside so the mailbox is consistent again");
  sub->callback([run, args] { *run = [args](Context& c) { return Fsck(c, *args); }; });
}

}  // namespace holdfast::cli
