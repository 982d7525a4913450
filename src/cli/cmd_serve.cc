// holdfast serve: the daemon (docs/cli.md, docs/lmtp.md).
#include "cli/commands.h"
#include "server/server.h"

namespace holdfast::cli {
namespace {

struct ServeArgs {
  std::string lmtp;
  std::string lmtp_unix;
  std::string pop3;
  std::string metrics;
};

}  // namespace

void AddServeCommand(CLI::App& app, Runner* run) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* sub = app.add_subcommand(
      "serve",
      "Run the daemon: LMTP on 127.0.0.1:2424 by default, in front of the durable spool, and\n"
      "POP3 on 127.0.0.1:1110 (STLS, and POP3S on pop3.tls_listen, once a certificate is set).\n"
      "Recovery runs before the first connection. SIGTERM drains and exits 0; SIGHUP reloads\n"
      "the configuration and reopens the log file. Logs: one event a line on stderr (or log.file);\n"
      "each message's life goes to the event log DATA/events (`holdfast trace`). Started by systemd socket\n"
      "activation (LISTEN_FDS), it listens on the sockets passed, named lmtp, pop3, pop3s or metrics.");
  sub->add_option("--lmtp", args->lmtp, "LMTP listener ADDR:PORT (overrides lmtp.listen)");
  sub->add_option("--pop3", args->pop3, "POP3 listener ADDR:PORT (overrides pop3.listen; default 127.0.0.1:1110)");
  sub->add_option("--lmtp-unix", args->lmtp_unix, "LMTP on a UNIX socket at this path (overrides lmtp.unix_socket)");
  sub->add_option("--metrics", args->metrics,
                  "HTTP listener ADDR:PORT for /metrics and /healthz (overrides metrics.listen; default 127.0.0.1:9925)");
  sub->callback([run, args] {
    *run = [args](Context& ctx) {
      ServeOptions o;
      o.data_dir = ctx.data_dir();
      o.config_path = ctx.config_path();
      o.config = ctx.config();
      o.lmtp_listen = args->lmtp;
      o.lmtp_unix = args->lmtp_unix;
      o.pop3_listen = args->pop3;
      o.metrics_listen = args->metrics;
      return RunServer(std::move(o));
    };
  });
}

}  // namespace holdfast::cli
