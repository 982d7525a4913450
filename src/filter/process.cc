#include "filter/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

extern char** environ;

namespace holdfast {
namespace {

using Clock = std::chrono::steady_clock;

// A write to a pipe whose reader has gone (a filter that exits without
// reading its stdin) raises SIGPIPE, which would kill the daemon. Ignore it
// once, process-wide -- unless the program has installed a handler of its
// own, which we leave alone.
void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigemptyset(&ign.sa_mask);
      ::sigaction(SIGPIPE, &ign, nullptr);
    }
  });
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  int get() const { return fd_; }
  void Reset(int fd) { Close(); fd_ = fd; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Both ends O_CLOEXEC, so a process another thread forks meanwhile does not
// keep our pipes open past its exec (and hide EOF from us).
Status MakePipe(Fd* read_end, Fd* write_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  read_end->Reset(p[0]);
  write_end->Reset(p[1]);
  return Status::Ok();
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// execvp's PATH search is done here, before fork: between fork and exec a
// multithreaded program may only call async-signal-safe functions.
std::string ResolveProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string_view dirs = (path != nullptr && *path != '\0') ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return name;  // execve fails with ENOENT, reported like any exec failure
}

// The inherited environment with spec.env laid over it (same NAME replaced).
std::vector<std::string> BuildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  auto name_of = [](std::string_view kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& x) { return name_of(x) == name_of(kv); });
    if (!replaced) out.emplace_back(kv);
  }
  for (const auto& x : extra) out.push_back(x);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct ChildLimit {
  int resource;
  struct rlimit value;
};

// The rlimits to set in the child, computed before fork (never above the
// current hard limit, which an unprivileged process cannot raise).
std::vector<ChildLimit> PlanLimits(const ProcessLimits& l) {
  std::vector<ChildLimit> out;
  auto add = [&](int res, uint64_t soft, uint64_t hard) {
    if (soft == 0) return;
    struct rlimit cur {};
    if (::getrlimit(res, &cur) != 0) return;
    rlim_t h = std::min<rlim_t>(hard, cur.rlim_max);
    rlim_t s = std::min<rlim_t>(soft, h);
    out.push_back({res, {s, h}});
  };
  add(RLIMIT_AS, l.memory_bytes, l.memory_bytes);
  // SIGXCPU at the soft limit (a program may catch it and report), SIGKILL a second later.
  add(RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1);
  add(RLIMIT_NOFILE, l.open_files, l.open_files);
  return out;
}

// Reports errno to the parent through the CLOEXEC pipe, from the child.
[[noreturn]] void ChildFail(int report_fd, int err) {
  while (::write(report_fd, &err, sizeof err) < 0 && errno == EINTR) {
  }
  ::_exit(127);
}

// Runs in the child between fork and exec: async-signal-safe calls only, no
// allocation, no locks (another thread may have held one at fork).
[[noreturn]] void ExecChild(int in_fd, int out_fd, int err_fd, int report_fd, pid_t parent,
                            const std::vector<ChildLimit>& limits, int nice, const char* program, char* const* argv,
                            char* const* envp) {
  auto fail = [report_fd](int err) { ChildFail(report_fd, err); };
  // A process group of its own, so a timeout kills its children too.
  if (::setpgid(0, 0) != 0) fail(errno);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
  // Move the pipe ends above 2 first: one of them may itself be 0, 1 or 2.
  int fds[3] = {in_fd, out_fd, err_fd};
  for (int& fd : fds) {
    fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) fail(errno);
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(fds[i], i) < 0) fail(errno);
  }
  // Nothing else of the parent's leaks into an untrusted program.
  if (report_fd > 3) ::close_range(3, static_cast<unsigned>(report_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(report_fd) + 1, ~0u, 0);
  // SIG_IGN and the signal mask survive exec; the program gets defaults.
  ::signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (const ChildLimit& l : limits) {
    if (::setrlimit(l.resource, &l.value) != 0) fail(errno);
  }
  if (nice > 0 && ::setpriority(PRIO_PROCESS, 0, nice) != 0) fail(errno);
  ::execve(program, argv, envp);
  ChildFail(report_fd, errno);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HF_SPAWN_WITH_FORK 1  // the sanitizer runtimes cannot follow a child on a stack of our own
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define HF_SPAWN_WITH_FORK 1
#endif
#endif

struct ChildArgs {
  int in_fd, out_fd, err_fd, report_fd;
  pid_t parent;
  const std::vector<ChildLimit>* limits;
  int nice;
  const char* program;
  char* const* argv;
  char* const* envp;
};

// The child of clone(CLONE_VM): it shares our memory until execve, so first
// it puts every caught signal back to its default -- a handler of ours must
// never run on its stack (ignored ones stay ignored, as across fork+exec).
int CloneChild(void* p) {
  const auto* a = static_cast<const ChildArgs*>(p);
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction sa {};
    if (::sigaction(sig, nullptr, &sa) != 0 || sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL) continue;
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = 0;
    ::sigaction(sig, &sa, nullptr);
  }
  ExecChild(a->in_fd, a->out_fd, a->err_fd, a->report_fd, a->parent, *a->limits, a->nice, a->program, a->argv, a->envp);
}

// fork() copies the page tables of the whole process, which on a
// paravirtualized VM costs about a millisecond of CPU even for a small
// process; clone(CLONE_VM | CLONE_VFORK) shares them until the child's
// execve (what glibc's posix_spawn does; posix_spawn itself has no
// PR_SET_PDEATHSIG and no rlimits). This thread waits meanwhile, with every
// signal blocked.
pid_t Spawn(ChildArgs& args) {
#ifdef HF_SPAWN_WITH_FORK
  const pid_t pid = ::fork();
  if (pid == 0) CloneChild(&args);
  return pid;
#else
  constexpr size_t kStack = 256 << 10;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -1;
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::clone(CloneChild, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::munmap(stack, kStack);
  errno = err;
  return pid;
#endif
}

// Kills the child's whole process group. Called only while the child is not
// yet reaped, so the group id cannot belong to anyone else.
void KillGroup(pid_t pid) {
  if (::kill(-pid, SIGKILL) != 0) ::kill(pid, SIGKILL);
}

std::string Seconds(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
  if (ms.count() < 1000) return std::to_string(ms.count()) + " ms";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms.count()) / 1000);
  return buf;
}

std::string Mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

bool ContainsNoCase(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
  return it != hay.end();
}

// The whole of a small /proc file, or "" if it cannot be read.
std::string ReadProcFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

uint64_t GroupCpuWaitNs(pid_t pgid) {
  uint64_t longest = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  while (struct dirent* e = ::readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    // stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so after the last ')'.
    std::string stat = ReadProcFile(dir + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0, pgrp = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %d %d", &state, &ppid, &pgrp) != 3 || pgrp != pgid) continue;
    unsigned long long on_cpu = 0, waited = 0;  // schedstat: ns on a CPU, ns waiting for one, slices
    if (std::sscanf(ReadProcFile(dir + "/schedstat").c_str(), "%llu %llu", &on_cpu, &waited) == 2)
      longest = std::max<uint64_t>(longest, waited);
  }
  ::closedir(proc);
  return longest;
}

std::string ProcessResult::Describe(const ProcessLimits& limits) const {
  if (stdout_overflow) return "output over " + std::to_string(max_stdout) + " bytes";
  if (OutOfMemory(limits)) {
    return limits.memory_bytes > 0 ? "memory limit (" + Mib(limits.memory_bytes) + ")" : "memory exhausted";
  }
  if (timed_out) return "timeout after " + Seconds(timeout);
  if (signal != 0) {
    const char* abbrev = ::sigabbrev_np(signal);
    std::string s = "signal " + std::to_string(signal) + " (SIG" + (abbrev != nullptr ? abbrev : "?") + ")";
    if ((signal == SIGXCPU || signal == SIGKILL) && limits.cpu_seconds > 0 && cpu_limit_hit)
      s += ": cpu limit (" + std::to_string(limits.cpu_seconds) + " s)";
    return s;
  }
  return "exit " + std::to_string(exit_code);
}

bool ProcessResult::OutOfMemory(const ProcessLimits& limits) const {
  if (ok() || stdout_overflow) return false;
  const bool said = ContainsNoCase(err, "memoryerror") || ContainsNoCase(err, "cannot allocate memory") ||
                    ContainsNoCase(err, "bad_alloc") || ContainsNoCase(err, "out of memory");
  // An allocation that failed and then a process too slow to die (a long
  // traceback on a loaded machine) is still the memory limit's doing.
  if (timed_out) return said;
  if (limits.memory_bytes > 0 && max_rss_bytes >= limits.memory_bytes / 2) return true;
  return said;
}

Result<ProcessResult> RunProcess(const ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) return Status::Invalid("no program to run");
  IgnoreSigpipeOnce();

  // Everything the child needs is built now: after fork, no allocation.
  std::string program = ResolveProgram(spec.argv[0]);
  std::vector<std::string> argv_store = spec.argv;
  std::vector<std::string> env_store = BuildEnv(spec.env);
  std::vector<char*> argv = CStrings(argv_store);
  std::vector<char*> envp = CStrings(env_store);
  std::vector<ChildLimit> limits = PlanLimits(spec.limits);
  // Only ever lower the priority: an unprivileged process cannot raise it
  // back, and a daemon started under `nice 15` keeps its 15.
  errno = 0;
  const int own_nice = ::getpriority(PRIO_PROCESS, 0);
  const int nice = errno == 0 && spec.nice > own_nice ? spec.nice : 0;

  Fd in_r, in_w, out_r, out_w, err_r, err_w, rep_r, rep_w;
  HF_RETURN_IF_ERROR(MakePipe(&in_r, &in_w));
  HF_RETURN_IF_ERROR(MakePipe(&out_r, &out_w));
  HF_RETURN_IF_ERROR(MakePipe(&err_r, &err_w));
  HF_RETURN_IF_ERROR(MakePipe(&rep_r, &rep_w));

  const pid_t parent = ::getpid();
  const Clock::time_point start = Clock::now();
  ChildArgs args{in_r.get(),      out_w.get(), err_w.get(), rep_w.get(), parent, &limits, nice,
                 program.c_str(), argv.data(), envp.data()};
  const pid_t pid = Spawn(args);
  if (pid < 0) return Status::FromErrno("fork", errno);
  in_r.Close();
  out_w.Close();
  err_w.Close();
  rep_w.Close();

  // EOF on the report pipe: exec succeeded (CLOEXEC closed it). An int: it failed.
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(rep_r.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Status::Io("cannot run " + spec.argv[0] + ": " + std::strerror(exec_errno), exec_errno);
  }

  if (spec.started) spec.started(pid);
  ProcessResult r;
  r.pid = pid;
  r.timeout = spec.timeout;
  r.max_stdout = spec.max_stdout;
  Clock::time_point deadline = start + spec.timeout;

  // A pidfd turns "the child has exited" into a poll event, so a child that
  // closes its stdout and keeps running is still bounded by the deadline.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));  // -1 on kernels before 5.3: polled instead
  SetNonBlocking(in_w.get());
  SetNonBlocking(out_r.get());
  SetNonBlocking(err_r.get());
  size_t written = 0;
  if (spec.input.empty()) in_w.Close();
  bool exited = false;  // a zombie now, not yet reaped
  Status poll_error;
  char buf[65536];

  while (out_r.get() >= 0 || err_r.get() >= 0 || !exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 && spec.forgive_cpu_wait > 0) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::nanoseconds(GroupCpuWaitNs(pid)));
      deadline = start + spec.timeout + std::min(waited, spec.timeout * spec.forgive_cpu_wait);
      left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    }
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    struct pollfd p[4];
    int np = 0;
    int i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
    if (in_w.get() >= 0) { i_in = np; p[np++] = {in_w.get(), POLLOUT, 0}; }
    if (out_r.get() >= 0) { i_out = np; p[np++] = {out_r.get(), POLLIN, 0}; }
    if (err_r.get() >= 0) { i_err = np; p[np++] = {err_r.get(), POLLIN, 0}; }
    int wait_ms = static_cast<int>(std::min<int64_t>(left, 1000));
    if (!exited && pidfd.get() >= 0) {
      i_pid = np;
      p[np++] = {pidfd.get(), POLLIN, 0};
    } else if (!exited) {
      wait_ms = std::min(wait_ms, 5);  // no pidfd: look for the exit now and then
    }
    int rc = ::poll(p, static_cast<nfds_t>(np), wait_ms);
    if (rc < 0 && errno != EINTR) {
      poll_error = Status::FromErrno("poll", errno);  // the child is still killed and reaped below
      break;
    }
    if (rc < 0) continue;

    if (i_in >= 0 && p[i_in].revents != 0) {
      ssize_t w = ::write(in_w.get(), spec.input.data() + written, std::min<size_t>(spec.input.size() - written, 65536));
      if (w > 0) written += static_cast<size_t>(w);
      // EPIPE: the child does not want (the rest of) its input -- its business.
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == spec.input.size()) in_w.Close();
    }
    if (i_out >= 0 && p[i_out].revents != 0) {
      ssize_t got = ::read(out_r.get(), buf, sizeof buf);
      if (got > 0) {
        if (r.out.size() + static_cast<size_t>(got) > spec.max_stdout) {
          r.stdout_overflow = true;
          break;
        }
        r.out.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        out_r.Close();
      }
    }
    if (i_err >= 0 && p[i_err].revents != 0) {
      ssize_t got = ::read(err_r.get(), buf, sizeof buf);
      if (got > 0) {
        // Past max_stderr it is read and dropped, so the child never blocks on it.
        size_t keep = std::min<size_t>(static_cast<size_t>(got), spec.max_stderr - std::min(spec.max_stderr, r.err.size()));
        r.err.append(buf, keep);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        err_r.Close();
      }
    }
    if (!exited) {
      siginfo_t info{};
      if (i_pid < 0 || p[i_pid].revents != 0) {
        exited = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
      }
    }
  }

  // Whatever happened, the group goes: leftover grandchildren of an
  // untrusted filter must not outlive it. The child is not reaped yet, so
  // its pid (the group id) is still ours.
  KillGroup(pid);
  in_w.Close();
  out_r.Close();
  err_r.Close();

  int status = 0;
  struct rusage ru {};
  while (::wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) return Status::FromErrno("wait4", errno);
  }
  if (!poll_error.ok()) return poll_error;
  r.max_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
    // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
    double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    r.cpu_limit_hit = spec.limits.cpu_seconds > 0 && !r.timed_out &&
                      (r.signal == SIGXCPU || cpu >= static_cast<double>(spec.limits.cpu_seconds) - 0.05);
  }
  return r;
}

}  // namespace holdfast
