// holdfast trace QUERY: the life of a message from the event log
// (events/trace.h, docs/events.md). Read-only; safe while the server runs.
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "core/message_id.h"
#include "events/trace.h"

namespace holdfast::cli {

namespace {

struct TraceArgs {
  std::string query;
  std::string message_id, from, to, since, until;
  bool json = false;
};

int Trace(Context& ctx, const TraceArgs& args) {
  const std::string cmd = "trace";
  TraceQuery q;
  // The positional QUERY: a MessageId, a <Message-ID>, or an address
  // (sender or recipient, whichever matches).
  if (!args.query.empty()) {
    if (MessageId::Parse(args.query)) {
      q.id = args.query;
    } else if (args.query.front() == '<' && args.query.size() > 2 && args.query.back() == '>' &&
               args.query.find('@') != std::string::npos) {
      q.message_id = args.query;
    } else if (args.query.find('@') != std::string::npos || args.query.find_first_of(" <>") == std::string::npos) {
      q.address = args.query;
    } else {
      PrintError(cmd, "cannot tell what '" + args.query + "' is: give a MessageId, a <Message-ID> or an address");
      return EX_USAGE;
    }
  }
  if (!args.message_id.empty()) q.message_id = args.message_id;
  if (!args.from.empty()) q.from = args.from;
  if (!args.to.empty()) q.to = args.to;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  for (auto [text, out, name] : {std::tuple{&args.since, &q.since_ms, "--since"}, {&args.until, &q.until_ms, "--until"}}) {
    if (text->empty()) continue;
    auto t = ParseTraceTime(*text, now);
    if (!t) {
      PrintError(cmd, std::string(name) + " '" + *text + "': want YYYY-MM-DD[THH:MM[:SS]][Z] (UTC) or an age such as 30m, 12h, 7d");
      return EX_USAGE;
    }
    *out = *t;
  }
  if (q.empty()) {
    PrintError(cmd, "nothing to look for: give QUERY, --message-id, --from or --to (see --help)");
    return EX_USAGE;
  }

  const std::string dir = JoinPath(ctx.data_dir(), EventLog::kDirName);
  std::vector<std::string> warnings;
  auto found = RunTrace(ctx.fs(), dir, q, &warnings);
  for (const auto& w : warnings) std::cerr << "holdfast trace: warning: " << w << "\n";
  if (!found.ok()) {
    PrintError(cmd, "cannot read the event log " + dir + ": " + found.status().ToString());
    return ExitCodeFor(found.status());
  }
  if (found->empty()) {
    std::cerr << "holdfast trace: no message matches (events are kept " << ctx.config().events.retention_days
              << " days: events.retention_days)\n";
    return 1;
  }
  std::cout << (args.json ? FormatTraceJson(*found) : FormatTraceText(*found)) << std::flush;
  return EX_OK;
}

}  // namespace

void AddTraceCommand(CLI::App& app, Runner* run) {
  auto args = std::make_shared<TraceArgs>();
  CLI::App* sub = app.add_subcommand(
      "trace",
      "Where is this message? Its life from the event log (DATA/events): accepted (when, from which client,\n"
      "size), each filter verdict and step, quarantine and release, each delivery (user, folder, UID), each\n"
      "POP3 retrieval and deletion (session, client address), and what recovery did to it.\n"
      "QUERY is a holdfast MessageId, a <Message-ID> header value, or an address (matches sender or recipient).\n"
      "Exit status 0 if something matched, 1 if nothing did, 64 for a bad query. docs/events.md has the events.\n"
      "Examples: holdfast trace 01M94C1722FEXG5425ZD0ABAQ6   (the id in every log line and every 250 reply)\n"
      "          holdfast trace '<CAF1x2@mail.example.com>'\n"
      "          holdfast trace --to alice --since 2h --json | jq .");
  sub->add_option("query", args->query, "MessageId, <Message-ID>, or an address");
  sub->add_option("--message-id", args->message_id, "Messages with this Message-ID: header");
  sub->add_option("--from", args->from, "Messages from this sender (\"<>\" for bounces)");
  sub->add_option("--to", args->to, "Messages to this recipient address, or delivered to this user");
  sub->add_option("--since", args->since, "Arrived at or after: YYYY-MM-DD[THH:MM[:SS]][Z] (UTC), or an age: 30m, 12h, 7d");
  sub->add_option("--until", args->until, "Arrived at or before (same forms)");
  sub->add_flag("--json", args->json, "JSON Lines: one object per message, its events in time order");
  sub->callback([run, args] { *run = [args](Context& c) { return Trace(c, *args); }; });
}

}  // namespace holdfast::cli
