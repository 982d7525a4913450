// holdfast: one binary, subcommands like git or doveadm (docs/cli.md).
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace holdfast::cli;
  CLI::App app{
      "holdfast -- a mail delivery and storage server that never loses acknowledged mail.\n"
      "Mail is stored in Maildir under DATA/mail/USER; users in DATA/users (Dovecot passwd-file).",
      "holdfast"};
  app.set_version_flag("--version", "holdfast 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand too
  GlobalOptions global;
  app.add_option("--data", global.data_dir, "data directory (default: $HOLDFAST_DATA, else ./data)");
  app.add_option("--config", global.config_path, "configuration file (default: DATA/holdfast.toml if present)");

  Runner run;
  AddDeliverCommand(app, &run);
  AddUserCommand(app, &run);
  AddMailboxCommand(app, &run);
  AddFsckCommand(app, &run);
  AddServeCommand(app, &run);
  AddQueueCommand(app, &run);
  AddImportCommand(app, &run);
  AddExportCommand(app, &run);
  AddTraceCommand(app, &run);
  AddFilterWorkerCommand(app, &run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : EX_USAGE;
  }
  Context ctx(global);
  if (int rc = ctx.Init(); rc != EX_OK) return rc;
  return run(ctx);
}
