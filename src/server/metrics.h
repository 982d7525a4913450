// /metrics: the server's counters in the Prometheus text exposition format
// (version 0.0.4), and /healthz. docs/operations.md lists every metric.
#pragma once

#include <cstdint>
#include <string>

#include "server/pop3_server.h"
#include "spool/spool.h"

namespace holdfast {

struct MetricsSnapshot {
  bool ready = false;  // recovered, listening, not draining, spool healthy
  double start_time_seconds = 0;  // wall clock, since the epoch
  double now_seconds = 0;
  Spool::Stats spool;
  int64_t oldest_backlog_ms = 0;  // wall clock of the oldest unfiled message; 0: none
  size_t lmtp_sessions = 0;
  uint64_t lmtp_connections = 0, lmtp_refused = 0;
  size_t pop3_sessions = 0;
  Pop3Server::Counters pop3;
  uint64_t recovered_mailboxes = 0, recovery_actions = 0, spool_replayed = 0;
  uint64_t events_written = 0, event_errors = 0;  // the trace's event log
};

std::string RenderMetrics(const MetricsSnapshot& m);

}  // namespace holdfast
