// holdfast serve: the daemon. Today it is the LMTP listener in front of the
// spool; POP3 and the filter workers come next.
//
// Order of start-up: configuration, recovery (spool replay, every mailbox's
// Open()), and only then the listeners. SIGTERM/SIGINT drain: stop
// accepting, let sessions finish (bounded), deliver what is due, exit 0.
// SIGHUP re-reads the configuration (limits for new sessions, log level) and
// reopens the log file.
#pragma once

#include <string>

#include "config/config.h"

namespace holdfast {

struct ServeOptions {
  std::string data_dir;
  std::string config_path;  // as given with --config, for SIGHUP
  Config config;
  std::string lmtp_listen;  // --lmtp, overrides lmtp.listen when set
  std::string lmtp_unix;    // --lmtp-unix, overrides lmtp.unix_socket when set
  std::string pop3_listen;  // --pop3, overrides pop3.listen when set
  std::string metrics_listen;  // --metrics, overrides metrics.listen when set
};

// Runs until a stop signal; returns the process exit code.
int RunServer(ServeOptions opts);

}  // namespace holdfast
