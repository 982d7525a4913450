// holdfast import mbox FILE -u USER: migrate a classic mbox (a /var/mail
// spool, a mail client's folder) into USER's mailbox. Resumable: a re-run
// skips what an earlier run stored (docs/migration.md).
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "migrate/mbox_import.h"
#include "users/users_file.h"

namespace holdfast::cli {
namespace {

struct ImportArgs {
  std::string file;
  std::string user;
  std::string format = "mboxrd";
};

// "import mbox [#####     ]  45%  1234 imported, 56 already there" on stderr,
// redrawn at most ten times a second.
class ProgressBar {
 public:
  ProgressBar(uint64_t total, const MboxImportReport& report)
      : total_(total), report_(report), tty_(::isatty(STDERR_FILENO) != 0) {}
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
    std::cerr << "\rimport mbox [" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] "
              << (100 * done / total_) << "%  " << report_.imported << " imported, " << report_.already_there
              << " already there" << std::flush;
  }

 private:
  uint64_t total_;
  const MboxImportReport& report_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

int ImportMboxCommand(Context& ctx, const ImportArgs& args) {
  const std::string cmd = "import mbox";
  auto user = UserName::Parse(args.user);
  if (!user.ok()) {
    PrintError(cmd, "no such user '" + args.user + "' (" + user.status().message() + ")");
    return EX_NOUSER;
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
    ProgressBar bar(*size, report);
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
}

}  // namespace holdfast::cli
