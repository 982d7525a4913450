// Running an untrusted program (a filter worker, a filter command): fork and
// exec with resource limits, feed it stdin, collect stdout and stderr
// (bounded), kill it at a deadline. Never throws, never hangs the caller past
// the deadline (plus the time to reap a SIGKILLed child).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace holdfast {

struct ProcessLimits {
  uint64_t memory_bytes = 0;  // RLIMIT_AS; 0 = inherit
  uint64_t cpu_seconds = 0;   // RLIMIT_CPU; 0 = inherit
  uint64_t open_files = 0;    // RLIMIT_NOFILE; 0 = inherit
};

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is the program (absolute, or looked up in PATH)
  std::vector<std::string> env;   // NAME=VALUE added to the inherited environment
  std::string_view input;         // written to stdin, then stdin is closed
  ProcessLimits limits;
  std::chrono::milliseconds timeout{30000};  // wall clock, from the start; then SIGKILL
  size_t max_stdout = 64u << 20;  // more is an error (`stdout_overflow`); the child is killed
  size_t max_stderr = 4096;       // more is silently cut
  int nice = 0;  // above our own: the child (and what it starts) runs at this nice value
  // n > 0: the time the child's process group spent runnable but waiting
  // for a CPU (a lowered priority, a busy machine) moves the deadline out,
  // by at most n more timeouts: a retry at a low priority is timed on the
  // CPU it was given, and a loop still ends.
  int forgive_cpu_wait = 0;
  // Called with the child's pid (= its process group) once it runs, so an
  // owner can kill it early (shutdown). May be empty.
  std::function<void(pid_t)> started;
};

struct ProcessResult {
  pid_t pid = 0;
  bool timed_out = false;        // killed at the deadline
  bool stdout_overflow = false;  // killed for writing more than max_stdout
  int exit_code = -1;            // when it exited
  int signal = 0;                // when a signal ended it (SIGKILL after a timeout too)
  uint64_t max_rss_bytes = 0;    // from wait4's rusage
  std::string out, err;
  // What it ran under, for Describe().
  std::chrono::milliseconds timeout{0};
  size_t max_stdout = 0;
  bool cpu_limit_hit = false;  // killed by a signal after using up RLIMIT_CPU
  // "exit 0", "exit 3", "signal 11 (SIGSEGV)", "timeout after 30 s", "memory limit", ...
  std::string Describe(const ProcessLimits& limits) const;
  // Hit its memory limit: killed, or failed, with max_rss near RLIMIT_AS
  // or an allocation failure on stderr.
  bool OutOfMemory(const ProcessLimits& limits) const;
  bool ok() const { return !timed_out && !stdout_overflow && signal == 0 && exit_code == 0; }
};

// The longest run-queue wait (ns, /proc/PID/schedstat) of the live members
// of process group `pgid`; 0 if none can be read.
uint64_t GroupCpuWaitNs(pid_t pgid);

// kIo only when the process could not be started at all (fork/pipe failure,
// or exec failure reported back through a CLOEXEC pipe). Safe to call from
// several threads at once. It reaps its own child: the caller must not
// reap with waitpid(-1) nor set SIGCHLD to SIG_IGN. SIGPIPE is ignored
// process-wide from the first call on (unless a handler is installed), so a
// child that closes its stdin cannot kill the caller.
Result<ProcessResult> RunProcess(const ProcessSpec& spec);

}  // namespace holdfast
