// holdfast serve: the daemon (LMTP, POP3, filters). Not built yet: the LMTP
// and POP3 servers are the next issues. Until then it says so plainly and
// explains how mail gets in today, rather than pretending to listen.
#include <iostream>

#include "cli/commands.h"

namespace holdfast::cli {
namespace {

int Serve(Context& ctx) {
  std::cout << "holdfast serve: the LMTP and POP3 listeners are not built yet.\n"
               "Today mail is delivered with the local delivery agent, for example:\n\n"
               "  printf 'Subject: hi\\n\\nhello\\n' | build/holdfast --data "
            << ctx.data_dir()
            << " deliver -u demo -f you@example.org\n"
               "  build/holdfast --data "
            << ctx.data_dir()
            << " mailbox list demo\n\n"
               "Dovecot (or mutt, notmuch) can read DATA/mail/USER as a Maildir; DATA/users is a Dovecot passwd-file.\n";
  return EX_UNAVAILABLE;
}

}  // namespace

void AddServeCommand(CLI::App& app, Runner* run) {
  CLI::App* sub = app.add_subcommand("serve", "Run the daemon (LMTP and POP3: not built yet; prints how to deliver).");
  sub->callback([run] { *run = [](Context& c) { return Serve(c); }; });
}

}  // namespace holdfast::cli
