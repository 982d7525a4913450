// holdfast export maildir|mbox -u USER DEST: copy USER's mailbox out, byte
// for byte, as a standard Maildir or an mbox file (docs/migration.md).
#include <unistd.h>

#include <iostream>

#include "cli/commands.h"
#include "migrate/export.h"

namespace holdfast::cli {
namespace {

struct ExportArgs {
  std::string dest;
  std::string user;
  std::string format = "mboxrd";
};

int ExportCommand(Context& ctx, const ExportArgs& args, bool mbox) {
  const std::string cmd = mbox ? "export mbox" : "export maildir";
  int rc = EX_OK;
  auto user = FindExistingUser(ctx, cmd, args.user, &rc);
  if (!user) return rc;
  auto box = ctx.OpenMailbox(*user);
  if (!box.ok()) {
    PrintError(cmd, "cannot open the mailbox of '" + user->str() + "': " + box.status().message());
    return EX_TEMPFAIL;
  }
  ExportOptions opts;
  opts.mboxo = args.format == "mboxo";
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  if (tty) {
    opts.progress = [&cmd](size_t done, size_t total) {
      if (done % 100 == 0 || done == total) {
        std::cerr << "\r" << cmd << ": " << done << " of " << total << " messages" << (done == total ? "\n" : "")
                  << std::flush;
      }
    };
  }
  ExportReport report;
  Status s = mbox ? ExportMbox(ctx.fs(), **box, args.dest, opts, &report)
                  : ExportMaildir(ctx.fs(), **box, args.dest, opts, &report);
  for (const auto& line : report.damaged) PrintError(cmd, "not exported: " + line);
  if (!s.ok()) {
    if (s.kind() == Status::Kind::kExists) {
      PrintError(cmd, "refusing to write into " + args.dest + ": " + s.message() +
                          " (give a new path, or an empty directory for a Maildir)");
      return EX_CANTCREAT;
    }
    PrintError(cmd, "export failed, " + args.dest + " is incomplete: remove it and run again: " + s.message());
    return s.kind() == Status::Kind::kNotFound ? EX_CANTCREAT : EX_TEMPFAIL;
  }
  std::cout << report.Summary() << std::endl;
  return report.damaged.empty() ? EX_OK : EX_DATAERR;
}

}  // namespace

void AddExportCommand(CLI::App& app, Runner* run) {
  CLI::App* exp = app.add_subcommand("export", "Copy a user's mailbox out, as a Maildir or an mbox file.");
  exp->require_subcommand(1);
  auto args = std::make_shared<ExportArgs>();
  const std::string codes =
      "Exit codes (sysexits.h): 0 every message exported; 65 damaged messages (size or checksum\n"
      "differs from the index) left out -- run holdfast fsck; 67 unknown user; 73 DEST exists\n"
      "(not empty) or cannot be created; 75 temporary failure (disk full, I/O error, lock\n"
      "timeout) -- DEST is incomplete: remove it and run again.";
  CLI::App* maildir = exp->add_subcommand(
      "maildir",
      "Write USER's messages, byte for byte as stored, into DEST as a standard Maildir\n"
      "(DEST/tmp, DEST/new, DEST/cur) that Dovecot, Courier, mutt or holdfast import maildir read.\n"
      "Files keep holdfast's names: unique base, ',S=' size, ':2,FLAGS' in cur/. DEST must not\n"
      "exist or be an empty directory; every file is created exclusively and fsync'ed, then\n"
      "moved into new/ or cur/. The mailbox is only read; mail delivered meanwhile may be left out.\n"
      "Example: holdfast export maildir -u alice /srv/backup/alice.maildir\n" + codes);
  maildir->add_option("-u,--user", args->user, "user whose mailbox is exported")->required();
  maildir->add_option("dest", args->dest, "the Maildir to create")->required();
  maildir->callback([run, args] { *run = [args](Context& c) { return ExportCommand(c, *args, false); }; });

  CLI::App* mbox = exp->add_subcommand(
      "mbox",
      "Write USER's messages into a new mbox file DEST: per message a 'From SENDER DATE' line\n"
      "(SENDER from Return-Path:, else MAILER-DAEMON; DATE the stored file's time, UTC), the\n"
      "message as stored with 'From ' lines quoted, and an empty line. A message without a\n"
      "final newline gets one (mbox cannot keep it otherwise). DEST is created exclusively\n"
      "(never overwritten) and fsync'ed. holdfast import mbox reads it back byte for byte.\n"
      "Example: holdfast export mbox -u alice alice.mbox\n" + codes);
  mbox->add_option("-u,--user", args->user, "user whose mailbox is exported")->required();
  mbox->add_option("dest", args->dest, "the mbox file to create")->required();
  mbox->add_option("--format", args->format,
                   "mboxrd: lines '>*From ' get one more '>' (default, reversible); mboxo: only 'From ' lines do")
      ->check(CLI::IsMember({"mboxrd", "mboxo"}));
  mbox->callback([run, args] { *run = [args](Context& c) { return ExportCommand(c, *args, true); }; });
}

}  // namespace holdfast::cli
