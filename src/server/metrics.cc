#include "server/metrics.h"

#include <cstdio>

namespace holdfast {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class Writer {
 public:
  void Metric(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Sample(const std::string& name, double v, const std::string& labels = "") {
    out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + Num(v) + "\n";
  }
  void One(const char* name, const char* type, const char* help, double v) {
    Metric(name, type, help);
    Sample(name, v);
  }
  void Hist(const char* name, const char* help, const Histogram& h) {
    Metric(name, "histogram", help);
    for (size_t i = 0; i < h.bounds().size(); ++i)
      Sample(std::string(name) + "_bucket", static_cast<double>(h.Cumulative(i)), "le=\"" + Num(h.bounds()[i]) + "\"");
    Sample(std::string(name) + "_bucket", static_cast<double>(h.count()), "le=\"+Inf\"");
    Sample(std::string(name) + "_sum", h.sum());
    Sample(std::string(name) + "_count", static_cast<double>(h.count()));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string RenderMetrics(const MetricsSnapshot& m) {
  Writer w;
  const Spool::Stats& s = m.spool;
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  w.One("holdfast_up", "gauge", "1 when the server is ready to accept mail (see /healthz).", m.ready ? 1 : 0);
  w.One("holdfast_start_time_seconds", "gauge", "When this server process started, seconds since the epoch.",
        m.start_time_seconds);

  w.One("holdfast_messages_accepted_total", "counter", "Messages made durable in the spool and acknowledged.",
        d(s.accepted));
  w.Metric("holdfast_deliveries_total", "counter", "Recipients finished, by outcome.");
  w.Sample("holdfast_deliveries_total", d(s.delivered), "outcome=\"delivered\"");
  w.Sample("holdfast_deliveries_total", d(s.already_there), "outcome=\"already_delivered\"");
  w.One("holdfast_delivery_failures_total", "counter", "Mailbox deliveries that failed and were retried.",
        d(s.delivery_failures));
  w.One("holdfast_messages_quarantined_total", "counter", "Messages set aside in the quarantine.", d(s.quarantined));
  w.One("holdfast_messages_discarded_total", "counter", "Messages a filter asked to discard.", d(s.discarded));
  w.One("holdfast_messages_released_total", "counter", "Messages released from the quarantine and delivered.",
        d(s.released));

  w.One("holdfast_spool_unretired", "gauge", "Messages in the spool with a recipient not yet finished.",
        d(s.unretired));
  w.One("holdfast_spool_backlog_messages", "gauge", "Acknowledged messages not yet filed (filtering or delivery).",
        d(s.backlog_messages));
  w.One("holdfast_spool_backlog_bytes", "gauge", "Bytes of the backlog's messages.", d(s.backlog_bytes));
  w.One("holdfast_spool_oldest_age_seconds", "gauge", "Age of the oldest message of the backlog; 0 when empty.",
        m.oldest_backlog_ms == 0 ? 0.0 : std::max(0.0, m.now_seconds - static_cast<double>(m.oldest_backlog_ms) / 1000));
  w.One("holdfast_spool_commits_total", "counter", "Group commits (one fdatasync each).", d(s.commits));
  w.Hist("holdfast_spool_commit_messages", "Messages made durable per group commit.", s.commit_messages);
  w.Hist("holdfast_spool_fsync_seconds", "Time of each group commit's fdatasync.", s.fsync_seconds);

  w.One("holdfast_filter_batches_total", "counter", "Batches handed to filter workers.", d(s.filter_batches));
  w.One("holdfast_filter_queue", "gauge", "Messages waiting for or in a filter worker.", d(s.filtering));
  w.Metric("holdfast_filter_failures_total", "counter", "Filter failures by kind.");
  w.Sample("holdfast_filter_failures_total", d(s.worker_failures), "kind=\"worker\"");
  w.Sample("holdfast_filter_failures_total", d(s.filter_failures), "kind=\"message\"");
  w.Sample("holdfast_filter_failures_total", d(s.filter_tempfails), "kind=\"temporary\"");

  w.One("holdfast_lmtp_sessions", "gauge", "LMTP sessions open now.", d(m.lmtp_sessions));
  w.One("holdfast_lmtp_connections_total", "counter", "LMTP connections accepted.", d(m.lmtp_connections));
  w.One("holdfast_lmtp_connections_refused_total", "counter", "LMTP connections refused (over the limit).",
        d(m.lmtp_refused));
  w.One("holdfast_pop3_sessions", "gauge", "POP3 sessions open now.", d(m.pop3_sessions));
  w.One("holdfast_pop3_sessions_total", "counter", "POP3 sessions served.", d(m.pop3.sessions));
  w.Metric("holdfast_pop3_logins_total", "counter", "POP3 logins by result.");
  w.Sample("holdfast_pop3_logins_total", d(m.pop3.logins_ok), "result=\"ok\"");
  w.Sample("holdfast_pop3_logins_total", d(m.pop3.logins_failed), "result=\"failed\"");
  w.Sample("holdfast_pop3_logins_total", d(m.pop3.logins_other), "result=\"refused\"");
  w.One("holdfast_pop3_retrieved_total", "counter", "Messages sent by RETR or TOP.", d(m.pop3.retrieved));
  w.One("holdfast_pop3_deleted_total", "counter", "Messages deleted by POP3 QUIT.", d(m.pop3.deleted));

  w.One("holdfast_recovery_mailboxes_total", "counter", "Mailboxes checked by recovery at start.",
        d(m.recovered_mailboxes));
  w.One("holdfast_recovery_actions_total", "counter", "Repairs recovery made at start (finished or rolled back).",
        d(m.recovery_actions));
  w.One("holdfast_recovery_spool_replayed_total", "counter", "Spool messages replayed at start.",
        d(m.spool_replayed));
  w.One("holdfast_events_written_total", "counter", "Events appended to the trace's event log.", d(m.events_written));
  w.One("holdfast_event_log_errors_total", "counter", "Events the event log could not write (mail flowed on).",
        d(m.event_errors));
  return w.Take();
}

}  // namespace holdfast
