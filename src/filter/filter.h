// The filter stage: between the spool and the mailboxes, a chain of content
// filters runs in worker processes the daemon does not trust, so a message
// that crashes or hangs a filter costs only itself a retry. This header
// holds what the daemon (filter/supervisor.h), the worker (`holdfast
// filter-worker`, filter/worker.h) and the configuration share.
// docs/filters.md is the manual.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/message_id.h"

namespace holdfast {

// One step of the chain: a [[filter]] table in the configuration.
struct FilterStep {
  enum class Kind { kCommand, kRspamd, kTrace };  // kTrace: adds a Received: line
  Kind kind = Kind::kCommand;
  std::string name;  // for logs and quarantine reasons; default: the kind
  std::chrono::milliseconds timeout{30000};  // per message: the command is killed, the socket given up

  // kCommand: the message on stdin; exit status and output decide
  // (docs/filters.md, "External commands").
  std::vector<std::string> argv;
  bool rewrite = false;  // stdout is the whole rewritten message (else: directives)

  // kRspamd: POST /checkv2 (docs/filters.md, "rspamd").
  std::string rspamd_address = "127.0.0.1:11333";  // HOST:PORT
  bool reject_to_quarantine = false;  // "reject": quarantine (else the junk folder)
  std::string junk_folder = "Junk";   // Maildir++ folder for spam
};

struct FilterOptions {
  std::vector<FilterStep> chain;  // empty: no filter stage, mail goes straight to the mailboxes
  uint32_t batch_size = 32;       // messages handed to one worker at most
  uint32_t workers = 2;           // worker processes at once
  // Solo retries of messages that failed before get slots of their own, at a
  // lower CPU priority, so a poison message costs the others one attempt, not K.
  uint32_t retry_workers = 2;     // 0: retries share the ordinary slots
  int retry_nice = 10;            // nice value of a retry's worker and its commands
  bool retry = false;             // this worker runs retries: their timeouts forgive CPU waits
  static constexpr int kRetryForgivenTimeouts = 1;  // ... up to one more timeout_ms
  uint32_t max_attempts = 3;      // K: solo failures before quarantine
  std::chrono::milliseconds tempfail_delay{60000};  // back-off after a temporary failure
  // Resource limits of a worker and of the commands it runs.
  uint64_t memory_bytes = 1ull << 30;  // RLIMIT_AS
  uint64_t cpu_seconds = 60;           // RLIMIT_CPU, per process
  uint64_t open_files = 256;           // RLIMIT_NOFILE
  std::string hostname;                // for the trace step's Received: line (the top-level `hostname`)
};

// What a worker gets for one message.
struct FilterInput {
  MessageId id;
  std::string client, helo, mail_from;
  std::vector<std::string> rcpts;  // addresses as the client gave them
  std::string body;
};

// What the chain decided for one message.
struct Verdict {
  enum class Kind : uint8_t {
    kDeliver = 0,     // into `folder` ("" = INBOX), `body` if rewritten
    kQuarantine = 1,  // a filter asked for it: `reason`
    kDiscard = 2,     // a filter asked for it (logged, never silent): `reason`
    kTempFail = 3,    // try again later; not the message's fault (scanner down)
    kFailed = 4,      // a step failed on this message (signal, timeout, memory, exit code, garbage): counts towards K
  };
  Kind kind = Kind::kDeliver;
  std::string folder;
  bool rewritten = false;
  std::string body;
  std::string reason;  // why, for kQuarantine/kDiscard/kTempFail/kFailed: one line
  std::string trail;   // what each step said, one line ("rspamd: add header (7.20/15.00)")
};
const char* VerdictKindName(Verdict::Kind k);

}  // namespace holdfast
