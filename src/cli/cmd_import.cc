// holdfast import mbox FILE -u USER: migrate a classic mbox (a /var/mail
// spool, a mail client's folder) into USER's mailbox. Resumable: a re-run
// skips what an earlier run stored (docs/migration.md).
#include <unistd.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "migrate/maildir_import.h"
#include "migrate/mbox_import.h"

namespace holdfast::cli {
namespace {

struct ImportArgs {
  std::string file;
  std::string user;
  std::string format = "mboxrd";
};

// "import mbox [#####     ]  45%  1234 imported, 56 already there" on stderr,
// redrawn at most ten times a second. `counts` gives the text after the percentage.
class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total, std::function<std::string()> counts)
      : label_(std::move(label)), total_(total), counts_(std::move(counts)), tty_(::isatty(STDERR_FILENO) != 0) {}
  ~ProgressBar() {
    if (drawn_) std::cerr << "\r\033[K" << std::flush;
  }
  void Update(uint64_t done) {
    if (!tty_ || total_ == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total_) return;
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total_);
    std::cerr << "\r" << label_ << " [" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] "
              << (100 * done / total_) << "%  " << counts_() << std::flush;
  }

 private:
  std::string label_;
  uint64_t total_;
  std::function<std::string()> counts_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

int ImportMboxCommand(Context& ctx, const ImportArgs& args) {
  const std::string cmd = "import mbox";
  int rc = EX_OK;
  auto user = FindExistingUser(ctx, cmd, args.user, &rc);
  if (!user) return rc;

  // The source is opened read-only and never written.
  auto info = ctx.fs().Stat(args.file);
  if (info.ok() && info->is_dir) {
    PrintError(cmd, args.file + " is a directory, not an mbox file");
    return EX_NOINPUT;
  }
  auto source = ctx.fs().OpenRead(args.file);
  if (!source.ok()) {
    PrintError(cmd, "cannot open " + args.file + ": " + source.status().message());
    return EX_NOINPUT;
  }
  auto size = (*source)->Size();
  if (!size.ok()) {
    PrintError(cmd, "cannot read " + args.file + ": " + size.status().message());
    return EX_NOINPUT;
  }

  auto box = ctx.OpenMailbox(*user);
  if (!box.ok()) {
    PrintError(cmd, "cannot open the mailbox of '" + user->str() + "': " + box.status().message());
    return EX_TEMPFAIL;
  }
  MboxImportOptions opts;
  opts.format = args.format == "mboxo" ? MboxFormat::kMboxo : MboxFormat::kMboxrd;
  opts.max_message_size = static_cast<uint64_t>(ctx.config().delivery.max_message_size);
  MboxImportReport report;
  Status s;
  {
    ProgressBar bar("import mbox", *size, [&report] {
      return std::to_string(report.imported) + " imported, " + std::to_string(report.already_there) +
             " already there";
    });
    opts.progress = [&bar](uint64_t done) { bar.Update(done); };
    s = ImportMbox(ctx.fs(), **source, *size, **box, opts, &report);
  }
  for (const auto& line : report.skipped_detail) PrintError(cmd, "skipped message at " + line);
  if (report.skipped_detail.size() < report.skipped_total()) {
    PrintError(cmd, "... and " + std::to_string(report.skipped_total() - report.skipped_detail.size()) +
                        " more skipped");
  }
  std::cout << report.Summary() << std::endl;
  if (!s.ok()) {
    if (s.kind() == Status::Kind::kInvalid) {
      PrintError(cmd, args.file + ": " + s.message());
      return EX_DATAERR;
    }
    PrintError(cmd, "import stopped, run it again to continue: " + s.message());
    return EX_TEMPFAIL;
  }
  return report.skipped_total() > 0 ? EX_DATAERR : EX_OK;
}

int ImportMaildirCommand(Context& ctx, const ImportArgs& args) {
  const std::string cmd = "import maildir";
  int rc = EX_OK;
  auto user = FindExistingUser(ctx, cmd, args.user, &rc);
  if (!user) return rc;
  // The source is only read.
  auto info = ctx.fs().Stat(args.file);
  if (!info.ok() || !info->is_dir) {
    PrintError(cmd, "cannot open " + args.file + ": " + (info.ok() ? "not a directory" : info.status().message()));
    return EX_NOINPUT;
  }
  auto box = ctx.OpenMailbox(*user);
  if (!box.ok()) {
    PrintError(cmd, "cannot open the mailbox of '" + user->str() + "': " + box.status().message());
    return EX_TEMPFAIL;
  }
  MaildirImportOptions opts;
  opts.max_message_size = static_cast<uint64_t>(ctx.config().delivery.max_message_size);
  MaildirImportReport report;
  Status s;
  {
    std::optional<ProgressBar> bar;
    opts.progress = [&](size_t done, size_t total) {
      if (!bar) {
        bar.emplace("import maildir", total, [&report] {
          return std::to_string(report.imported) + " imported, " + std::to_string(report.already_there) +
                 " already there";
        });
      }
      bar->Update(done);
    };
    s = ImportMaildir(ctx.fs(), args.file, **box, opts, &report);
  }
  for (const auto& line : report.skipped_detail) PrintError(cmd, "skipped " + line);
  if (report.skipped_detail.size() < report.skipped_total()) {
    PrintError(cmd, "... and " + std::to_string(report.skipped_total() - report.skipped_detail.size()) +
                        " more skipped");
  }
  if (!report.subfolders.empty()) {
    std::string names;
    for (const auto& f : report.subfolders) names += (names.empty() ? "" : " ") + f;
    PrintError(cmd, "note: only the INBOX (new/, cur/) is imported; not the " +
                        std::to_string(report.subfolders.size()) + " Maildir++ folder(s) " + names +
                        " (holdfast keeps one mailbox per user; import one as a Maildir of its own, to another user, if needed)");
  }
  std::cout << report.Summary() << std::endl;
  if (!s.ok()) {
    if (s.kind() == Status::Kind::kInvalid) {
      PrintError(cmd, s.message());
      return EX_NOINPUT;
    }
    PrintError(cmd, "import stopped, run it again to continue: " + s.message());
    return EX_TEMPFAIL;
  }
  return report.skipped_total() > 0 ? EX_DATAERR : EX_OK;
}

}  // namespace

void AddImportCommand(CLI::App& app, Runner* run) {
  CLI::App* import = app.add_subcommand("import", "Migrate mail from other formats into holdfast.");
  import->require_subcommand(1);
  auto args = std::make_shared<ImportArgs>();
  CLI::App* mbox = import->add_subcommand(
      "mbox",
      "Import every message of an mbox file (e.g. /var/mail/USER) into USER's mailbox.\n"
      "The file is only read. Resumable: a re-run skips messages an earlier run imported,\n"
      "also those deleted since. Rules and caveats: docs/migration.md.\n"
      "Exit codes (sysexits.h): 0 all imported (or already there); 65 not an mbox file, or messages\n"
      "skipped (empty, over delivery.max_message_size); 66 cannot open FILE; 67 unknown user;\n"
      "75 temporary failure (disk full, I/O error, lock busy) -- run it again.");
  mbox->add_option("file", args->file, "the mbox file")->required();
  mbox->add_option("-u,--user", args->user, "user whose mailbox receives the messages")->required();
  mbox->add_option("--format", args->format,
                   "mboxrd: lines '>From ', '>>From ', ... lose one '>' (default); mboxo: stored as they are")
      ->check(CLI::IsMember({"mboxrd", "mboxo"}));
  mbox->callback([run, args] { *run = [args](Context& c) { return ImportMboxCommand(c, *args); }; });

  CLI::App* maildir = import->add_subcommand(
      "maildir",
      "Import every message of a Maildir (DIR/new and DIR/cur, e.g. from Dovecot or Courier)\n"
      "into USER's mailbox, keeping each message's flags: a message from cur/ goes into cur/ with\n"
      "its ':2,' flags (S seen, R replied, F flagged, T trashed, D draft; keywords a-z are dropped),\n"
      "one from new/ into new/ (into cur/ if its name carries flags). DIR/tmp is ignored;\n"
      "Maildir++ folders (DIR/.NAME) are not imported (they are named on stderr).\n"
      "DIR is only read. Resumable: each message's id comes from its file's base name, so a\n"
      "re-run skips what an earlier run imported, also mail deleted since.\n"
      "Rules and caveats: docs/migration.md.\n"
      "Example: holdfast import maildir /home/alice/Maildir -u alice\n"
      "Exit codes (sysexits.h): 0 all imported (or already there); 65 messages skipped (empty,\n"
      "over delivery.max_message_size, gone from DIR meanwhile); 66 DIR missing or not a Maildir;\n"
      "67 unknown user; 75 temporary failure (disk full, I/O error, lock busy) -- run it again.");
  maildir->add_option("dir", args->file, "the Maildir (the directory holding cur/ new/ tmp/)")->required();
  maildir->add_option("-u,--user", args->user, "user whose mailbox receives the messages")->required();
  maildir->callback([run, args] { *run = [args](Context& c) { return ImportMaildirCommand(c, *args); }; });
}

}  // namespace holdfast::cli
