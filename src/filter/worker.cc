#include "filter/worker.h"

#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include "filter/message_edit.h"
#include "filter/process.h"
#include "filter/protocol.h"
#include "filter/rspamd.h"

namespace holdfast {
namespace {

constexpr int kExitTempFail = 75;                 // EX_TEMPFAIL from a command: try again later
constexpr size_t kMaxDirectiveOutput = 64 << 10;  // stdout of a command that is not a rewrite
constexpr size_t kMaxReasonText = 200;            // a filter's own reason, escaped

// What the steps so far made of the message.
struct ChainState {
  explicit ChainState(const FilterInput& i) : in(i) {}
  const FilterInput& in;
  std::string body;      // the message, once a step changed it
  bool changed = false;
  std::string folder;    // "" = INBOX
  std::vector<std::string> trail;

  std::string_view Body() const { return changed ? std::string_view(body) : std::string_view(in.body); }
  void SetBody(std::string b) {
    body = std::move(b);
    changed = true;
  }
};

Verdict Stop(ChainState& st, Verdict::Kind kind, std::string reason) {
  Verdict v;
  v.kind = kind;
  st.trail.push_back(reason);
  v.reason = std::move(reason);
  return v;
}

// The end of what a failing command wrote on stderr (where the error usually
// is: a traceback's last line), as a printable suffix for a reason.
std::string StderrExcerpt(std::string_view err) {
  while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) err.remove_suffix(1);
  if (err.empty()) return "";
  if (err.size() > 120) err = err.substr(err.size() - 120);
  return "; stderr: " + EscapeLine(err, 160);
}

std::string EnvValue(std::string_view v) {
  std::string s(v);
  std::replace(s.begin(), s.end(), '\0', '?');  // would cut the C string short
  return s;
}

std::vector<std::string> CommandEnv(const FilterInput& in) {
  std::string rcpts;
  for (const auto& r : in.rcpts) rcpts += (rcpts.empty() ? "" : ",") + r;
  return {"HOLDFAST_MESSAGE_ID=" + in.id.ToString(), "HOLDFAST_SENDER=" + EnvValue(in.mail_from),
          "HOLDFAST_RECIPIENTS=" + EnvValue(rcpts), "HOLDFAST_CLIENT=" + EnvValue(in.client),
          "HOLDFAST_HELO=" + EnvValue(in.helo)};
}

// What a (non-rewrite) command's stdout asked for.
struct Directives {
  std::vector<HeaderField> headers;
  std::optional<std::string> folder;
  std::optional<Verdict::Kind> stop;  // kQuarantine or kDiscard, the first one given
  std::string stop_reason;
};

// docs/filters.md, "Directives". The first bad line makes the whole output
// garbage: a filter that says something we do not understand has failed.
Result<Directives> ParseDirectives(std::string_view out) {
  Directives d;
  while (!out.empty()) {
    size_t lf = out.find('\n');
    std::string_view line = out.substr(0, lf);
    out = lf == std::string_view::npos ? std::string_view() : out.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto garbage = [line](std::string_view why) {
      return Status::Invalid("garbage output: " + EscapeLine(line, 80) + (why.empty() ? "" : " (" + std::string(why) + ")"));
    };
    size_t sp = line.find(' ');
    std::string_view word = line.substr(0, sp);
    std::string_view arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (word == "header") {
      size_t colon = arg.find(':');
      if (colon == std::string_view::npos) return garbage("expected 'header NAME: VALUE'");
      std::string_view name = arg.substr(0, colon), value = arg.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      Status s = CheckHeaderField(name, value);
      if (!s.ok()) return garbage(s.message());
      d.headers.emplace_back(name, value);
    } else if (word == "folder") {
      if (arg.size() == 5 && std::equal(arg.begin(), arg.end(), "INBOX", [](char a, char b) {
            return std::toupper(static_cast<unsigned char>(a)) == b;
          })) {
        d.folder = "";
        continue;
      }
      Status s = CheckFolderName(arg);
      if (!s.ok()) return garbage(s.message());
      d.folder = std::string(arg);
    } else if (word == "quarantine" || word == "discard") {
      if (!d.stop) {
        d.stop = word == "quarantine" ? Verdict::Kind::kQuarantine : Verdict::Kind::kDiscard;
        d.stop_reason = arg.empty() ? "no reason given" : EscapeLine(arg, kMaxReasonText);
      }
    } else {
      return garbage("");
    }
  }
  return d;
}

std::optional<Verdict> RunCommandStep(const FilterOptions& opts, const FilterStep& step, ChainState& st) {
  ProcessSpec spec;
  spec.argv = step.argv;
  spec.env = CommandEnv(st.in);
  spec.input = st.Body();
  spec.limits = ProcessLimits{opts.memory_bytes, opts.cpu_seconds, opts.open_files};
  spec.timeout = step.timeout;
  spec.forgive_cpu_wait = opts.retry ? FilterOptions::kRetryForgivenTimeouts : 0;  // it runs at a lowered priority (docs/filters.md)
  // A rewrite may add to the message, within reason; directives are a few lines.
  spec.max_stdout = step.rewrite ? std::max<size_t>(64u << 20, 2 * st.Body().size() + (1u << 20)) : kMaxDirectiveOutput;
  auto r = RunProcess(spec);
  // Not the message's fault (a missing or unrunnable program): try later,
  // never quarantine mail for a configuration mistake.
  if (!r.ok()) return Stop(st, Verdict::Kind::kTempFail, step.name + ": " + r.status().message());

  if (!r->ok()) {
    if (!r->timed_out && !r->stdout_overflow && r->signal == 0 && r->exit_code == kExitTempFail) {
      return Stop(st, Verdict::Kind::kTempFail,
                  step.name + ": exit 75 (temporary failure)" + StderrExcerpt(r->err));
    }
    return Stop(st, Verdict::Kind::kFailed, step.name + ": " + r->Describe(spec.limits) + StderrExcerpt(r->err));
  }

  if (step.rewrite) {
    if (r->out.empty())
      return Stop(st, Verdict::Kind::kFailed, step.name + ": garbage output: empty message from a rewrite filter");
    st.trail.push_back(step.name + ": rewrote (" + std::to_string(r->out.size()) + " bytes)");
    st.SetBody(std::move(r->out));
    return std::nullopt;
  }

  auto d = ParseDirectives(r->out);
  if (!d.ok()) return Stop(st, Verdict::Kind::kFailed, step.name + ": " + d.status().message());
  if (d->stop) {
    return Stop(st, *d->stop, step.name + ": " + VerdictKindName(*d->stop) + " " + d->stop_reason);
  }
  std::string said = step.name + ": deliver";
  if (!d->headers.empty()) {
    st.SetBody(PrependHeaders(st.Body(), d->headers));
    said += ", " + std::to_string(d->headers.size()) + " header" + (d->headers.size() == 1 ? "" : "s");
  }
  if (d->folder) {
    st.folder = *d->folder;
    said += ", folder " + (d->folder->empty() ? std::string("INBOX") : *d->folder);
  }
  st.trail.push_back(said);
  return std::nullopt;
}

// rspamd's verdict on spam, written into the message: its milter header
// edits, and X-Spam: Yes unless rspamd adds that itself.
void AddSpamHeaders(const RspamdReply& reply, ChainState& st, std::string* said) {
  std::string msg(st.Body());
  for (const auto& name : reply.remove_headers) {
    if (CheckHeaderField(name, "").ok()) msg = RemoveHeader(msg, name);
  }
  std::vector<HeaderField> add;
  bool has_x_spam = false;
  size_t skipped = 0;
  for (const auto& [name, value] : reply.add_headers) {
    if (!CheckHeaderField(name, value).ok()) {
      ++skipped;
      continue;
    }
    has_x_spam = has_x_spam || (name.size() == 6 && std::equal(name.begin(), name.end(), "x-spam", [](char a, char b) {
                                  return std::tolower(static_cast<unsigned char>(a)) == b;
                                }));
    add.emplace_back(name, value);
  }
  if (!has_x_spam) add.insert(add.begin(), HeaderField{"X-Spam", "Yes"});
  st.SetBody(PrependHeaders(msg, add));
  if (skipped > 0) *said += ", " + std::to_string(skipped) + " bad header(s) from rspamd skipped";
}

std::optional<Verdict> RunRspamdStep(const FilterStep& step, ChainState& st) {
  FilterInput changed;
  const FilterInput* in = &st.in;
  if (st.changed) {
    changed.id = st.in.id;
    changed.client = st.in.client;
    changed.helo = st.in.helo;
    changed.mail_from = st.in.mail_from;
    changed.rcpts = st.in.rcpts;
    changed.body = st.body;
    in = &changed;
  }
  auto reply = RspamdCheck(step.rspamd_address, *in, step.timeout);
  if (!reply.ok()) {
    std::string_view why = reply.status().message();
    if (why.starts_with("rspamd: ")) why.remove_prefix(8);  // the step name says it
    // Only a reply that makes no sense is held against the message; a
    // scanner that is down, slow or refusing is a temporary failure: an
    // outage of the scanner must not send messages to the quarantine.
    if (reply.status().kind() == Status::Kind::kCorrupt)
      return Stop(st, Verdict::Kind::kFailed, step.name + ": bad reply: " + std::string(why));
    return Stop(st, Verdict::Kind::kTempFail, step.name + ": unavailable: " + std::string(why));
  }
  char score[64];
  std::snprintf(score, sizeof score, "(%.2f/%.2f)", reply->score, reply->required_score);
  const std::string& action = reply->action;
  std::string said = step.name + ": " + EscapeLine(action, 40) + " " + score;
  if (action == "no action" || action == "greylist") {
    // Greylisting is for an MTA during the SMTP dialogue; the mail is already ours.
  } else if (action == "add header") {
    AddSpamHeaders(*reply, st, &said);
  } else if (action == "rewrite subject") {
    AddSpamHeaders(*reply, st, &said);
    if (!reply->subject.empty()) st.SetBody(SetSubject(st.Body(), reply->subject));
  } else if (action == "reject" || action == "soft reject") {
    if (step.reject_to_quarantine) return Stop(st, Verdict::Kind::kQuarantine, said);
    AddSpamHeaders(*reply, st, &said);
    st.folder = step.junk_folder;
    said += ", folder " + step.junk_folder;
  } else {
    return Stop(st, Verdict::Kind::kFailed, step.name + ": bad reply: unknown action \"" + EscapeLine(action, 40) + "\"");
  }
  st.trail.push_back(said);
  return std::nullopt;
}

// The Received: line of RFC 5321 4.4 a delivery agent adds: who handed the
// message over, to whom, when (the MessageId holds the time of receipt).
std::optional<Verdict> RunTraceStep(const FilterOptions& opts, const FilterStep& step, ChainState& st) {
  std::string value = ReceivedValue(st.in.helo, st.in.client, opts.hostname, st.in.id);
  st.SetBody(PrependHeaders(st.Body(), {HeaderField{"Received", value}}));
  st.trail.push_back(step.name + ": received line");
  return std::nullopt;
}

std::string JoinTrail(const std::vector<std::string>& trail) {
  std::string out;
  for (const auto& t : trail) out += (out.empty() ? "" : "; ") + t;
  return out;
}

void Diagnose(int err_fd, const std::string& what) {
  std::string line = "holdfast filter-worker: " + what + "\n";
  (void)!::write(err_fd, line.data(), line.size());
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

Verdict RunFilterChain(const FilterOptions& opts, const FilterInput& in) {
  ChainState st(in);
  for (const FilterStep& step : opts.chain) {
    std::optional<Verdict> stop = step.kind == FilterStep::Kind::kCommand ? RunCommandStep(opts, step, st)
                                  : step.kind == FilterStep::Kind::kRspamd ? RunRspamdStep(step, st)
                                                                           : RunTraceStep(opts, step, st);
    if (stop) {
      stop->trail = JoinTrail(st.trail);
      return std::move(*stop);
    }
  }
  Verdict v;
  v.kind = Verdict::Kind::kDeliver;
  v.folder = st.folder;
  v.rewritten = st.changed;
  if (st.changed) v.body = std::move(st.body);
  v.trail = JoinTrail(st.trail);
  return v;
}

int RunFilterWorker(const FilterOptions& opts, int in_fd, int out_fd, int err_fd) {
  std::string input;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(in_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Diagnose(err_fd, std::string("cannot read the batch: ") + std::strerror(errno));
      return EX_IOERR;
    }
    if (n == 0) break;
    input.append(buf, static_cast<size_t>(n));
  }
  auto batch = DecodeFilterInputs(input);
  if (!batch.ok()) {
    Diagnose(err_fd, "bad batch: " + batch.status().message());
    return EX_DATAERR;
  }
  input = std::string();  // the bodies are in `batch` now
  for (size_t i = 0; i < batch->size(); ++i) {
    // Written at once: if a later message kills this worker, this one is settled.
    if (!WriteAll(out_fd, EncodeVerdict(static_cast<uint32_t>(i), RunFilterChain(opts, (*batch)[i])))) {
      Diagnose(err_fd, std::string("cannot write a verdict: ") + std::strerror(errno));
      return EX_IOERR;
    }
  }
  return EX_OK;
}

}  // namespace holdfast
