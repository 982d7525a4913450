// RunProcess with real programs: every way an untrusted filter can end.
#include "filter/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace holdfast {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

ProcessResult Exec(ProcessSpec spec) {
  auto r = RunProcess(spec);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : ProcessResult{};
}

ProcessSpec Sh(const std::string& script) {
  ProcessSpec s;
  s.argv = {"/bin/sh", "-c", script};
  s.timeout = milliseconds(10000);
  return s;
}

long ElapsedMs(Clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - since).count());
}

// Whether `pid` is gone (or a zombie waiting for init to reap it).
bool Dead(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

TEST(FilterProcessTest, ExitCodesAndOutput) {
  ProcessResult ok = Exec(Sh("echo out; echo err >&2; exit 0"));
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.exit_code, 0);
  EXPECT_EQ(ok.out, "out\n");
  EXPECT_EQ(ok.err, "err\n");
  EXPECT_EQ(ok.Describe({}), "exit 0");

  ProcessResult three = Exec(Sh("exit 3"));
  EXPECT_FALSE(three.ok());
  EXPECT_EQ(three.exit_code, 3);
  EXPECT_EQ(three.signal, 0);
  EXPECT_EQ(three.Describe({}), "exit 3");
  EXPECT_FALSE(three.OutOfMemory({}));
}

TEST(FilterProcessTest, StdinEnvironmentAndPathLookup) {
  ProcessSpec s;
  s.argv = {"cat"};  // found through PATH
  s.input = "hello\r\nworld";
  ProcessResult r = Exec(s);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out, "hello\r\nworld");

  ProcessSpec e = Sh("printf '%s|%s' \"$HOLDFAST_X\" \"$HOME\"");
  e.env = {"HOLDFAST_X=a b", "HOME=/nowhere"};  // added, and replacing an inherited one
  EXPECT_EQ(Exec(e).out, "a b|/nowhere");
}

// /proc/self/status of a child, the line starting with `field`.
std::string StatusLine(ProcessSpec s, const std::string& field) {
  ProcessResult r = Exec(std::move(s));
  size_t at = r.out.find(field);
  return at == std::string::npos ? "" : r.out.substr(at, r.out.find('\n', at) - at);
}

TEST(FilterProcessTest, ChildStartsWithNoSignalBlockedAndIgnoredOnesKept) {
  // RunProcess blocks every signal while it spawns; the child must not keep that.
  ProcessSpec s;
  s.argv = {"cat", "/proc/self/status"};
  EXPECT_EQ(StatusLine(s, "SigBlk:"), "SigBlk:\t0000000000000000");
  // An ignored signal stays ignored across exec, as with fork (SIGPIPE excepted).
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGUSR2, &ign, &old), 0);
  std::string ignored = StatusLine(s, "SigIgn:");
  ::sigaction(SIGUSR2, &old, nullptr);
  ASSERT_FALSE(ignored.empty());
  const unsigned long mask = std::stoul(ignored.substr(ignored.find('\t') + 1), nullptr, 16);
  EXPECT_TRUE(mask & (1ul << (SIGUSR2 - 1))) << ignored;
  EXPECT_FALSE(mask & (1ul << (SIGPIPE - 1))) << ignored;
}

TEST(FilterProcessTest, NiceValueReachesTheChildAndWhatItStarts) {
  errno = 0;
  const int own = ::getpriority(PRIO_PROCESS, 0);
  ASSERT_EQ(errno, 0);
  ProcessSpec s = Sh("cut -d' ' -f19 /proc/$$/stat; sh -c 'cut -d\" \" -f19 /proc/$$/stat'");
  s.nice = 12;
  const std::string want = own >= 12 ? std::to_string(own) : "12";
  EXPECT_EQ(Exec(s).out, want + "\n" + want + "\n");
  s.nice = 0;  // nothing asked: our own
  EXPECT_EQ(Exec(s).out, std::to_string(own) + "\n" + std::to_string(own) + "\n");
  // Asked for a higher priority than ours: stays at ours (and still runs).
  s.nice = own > 0 ? own - 1 : 0;
  EXPECT_EQ(Exec(s).out, std::to_string(own) + "\n" + std::to_string(own) + "\n");
}

// A child at nice 10 sharing CPU 0 with a busy loop at our priority gets
// about a tenth of it (less if more runs there): its 0.2 s of CPU take 2 s
// or more of wall clock, well past a 1 s timeout, but well within 1 s plus
// 20 timeouts' worth of waiting forgiven.
TEST(FilterProcessTest, ForgivenCpuWaitMovesTheDeadlineButNotForever) {
  ProcessSpec hog = Sh("exec taskset -c 0 sh -c 'while :; do :; done'");
  hog.timeout = milliseconds(60000);
  std::atomic<pid_t> hog_pid{0};  // set on the hog's thread
  hog.started = [&hog_pid](pid_t p) { hog_pid = p; };
  std::thread hog_thread([&] { (void)RunProcess(hog); });
  while (hog_pid == 0) std::this_thread::sleep_for(milliseconds(10));

  ProcessSpec job;
  job.argv = {"taskset", "-c", "0", "/usr/bin/python3", "-c",
              "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\nprint('done')"};
  job.nice = 10;
  job.timeout = milliseconds(1000);
  ProcessResult strict = Exec(job);  // wall clock only: the starved job runs out of time
  EXPECT_TRUE(strict.timed_out) << strict.out;
  job.forgive_cpu_wait = 20;  // timed on what it was given: finishes
  ProcessResult fair = Exec(job);
  EXPECT_TRUE(fair.ok()) << fair.Describe({});
  EXPECT_EQ(fair.out, "done\n");
  // A loop that waits for the CPU is still killed, by 1 + 3 timeouts at most.
  ProcessSpec loop = Sh("exec taskset -c 0 sh -c 'while :; do :; done'");
  loop.nice = 10;
  loop.timeout = milliseconds(300);
  loop.forgive_cpu_wait = 3;
  auto start = Clock::now();
  ProcessResult looped = Exec(loop);
  EXPECT_TRUE(looped.timed_out);
  EXPECT_LT(ElapsedMs(start), 300 * (1 + 3) + 2000);

  ::kill(-hog_pid, SIGKILL);
  hog_thread.join();
}

TEST(FilterProcessTest, Signal) {
  ProcessResult r = Exec(Sh("kill -SEGV $$"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.Describe({}), "signal 11 (SIGSEGV)");
}

TEST(FilterProcessTest, TimeoutKillsAnInfiniteLoop) {
  ProcessSpec s = Sh("while :; do :; done");
  s.timeout = milliseconds(300);
  auto start = Clock::now();
  ProcessResult r = Exec(s);
  EXPECT_LT(ElapsedMs(start), 3000);  // the deadline, then SIGKILL and reaping
  EXPECT_GE(ElapsedMs(start), 300);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.Describe({}), "timeout after 300 ms");
  s.timeout = milliseconds(2000);
  r.timeout = s.timeout;
  EXPECT_EQ(r.Describe({}), "timeout after 2 s");
}

TEST(FilterProcessTest, TimeoutKillsTheWholeGroup) {
  // The grandchild keeps stdout open after sh exits: still bounded by the
  // deadline, and killed with its group.
  ProcessSpec s = Sh("sleep 30 & echo $!; exit 0");
  s.timeout = milliseconds(300);
  auto start = Clock::now();
  ProcessResult r = Exec(s);
  EXPECT_LT(ElapsedMs(start), 3000);  // the deadline, then SIGKILL and reaping
  EXPECT_TRUE(r.timed_out);
  pid_t grandchild = std::stoi(r.out);
  ASSERT_GT(grandchild, 1);
  bool dead = false;
  for (int i = 0; i < 100 && !(dead = Dead(grandchild)); ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(dead) << "sleep " << grandchild << " survived";
}

TEST(FilterProcessTest, ChildThatClosesItsOutputStillHasADeadline) {
  ProcessSpec s = Sh("exec >/dev/null 2>&1; sleep 30");
  s.timeout = milliseconds(300);
  auto start = Clock::now();
  ProcessResult r = Exec(s);
  EXPECT_LT(ElapsedMs(start), 3000);  // the deadline, then SIGKILL and reaping
  EXPECT_TRUE(r.timed_out);
}

TEST(FilterProcessTest, MemoryLimit) {
  ProcessSpec s;
  s.argv = {"python3", "-c", "x = []\nwhile True: x.append(bytearray(1 << 20))"};
  s.limits.memory_bytes = 200u << 20;
  s.timeout = milliseconds(20000);  // ~1.5 s here; far more on a machine under load
  ProcessResult r = Exec(s);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.OutOfMemory(s.limits)) << r.Describe(s.limits) << " rss " << r.max_rss_bytes << " " << r.err;
  EXPECT_EQ(r.Describe(s.limits), "memory limit (200 MiB)");
  EXPECT_NE(r.err.find("MemoryError"), std::string::npos) << r.err;

  // A plain failure under the same limit is not a memory failure.
  ProcessSpec small = Sh("exit 1");
  small.limits.memory_bytes = 200u << 20;
  ProcessResult one = Exec(small);
  EXPECT_FALSE(one.OutOfMemory(small.limits));
  EXPECT_EQ(one.Describe(small.limits), "exit 1");
}

TEST(FilterProcessTest, CpuLimit) {
  ProcessSpec s = Sh("while :; do :; done");
  s.limits.cpu_seconds = 1;
  s.timeout = milliseconds(20000);  // one CPU second may take longer on a loaded machine
  ProcessResult r = Exec(s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.signal == SIGXCPU || r.signal == SIGKILL) << r.signal;
  EXPECT_NE(r.Describe(s.limits).find("cpu limit (1 s)"), std::string::npos) << r.Describe(s.limits);
}

TEST(FilterProcessTest, OpenFilesLimitAndNoInheritedDescriptors) {
  int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: the child must close it anyway
  ASSERT_GE(leaked, 3);
  ProcessSpec s = Sh("ulimit -n; ls /proc/$$/fd");
  s.limits.open_files = 64;
  ProcessResult r = Exec(s);
  ::close(leaked);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out.substr(0, 3), "64\n");
  std::vector<std::string> fds;
  std::string rest = r.out.substr(3);
  for (size_t pos = 0; pos < rest.size();) {
    size_t lf = rest.find('\n', pos);
    fds.push_back(rest.substr(pos, lf - pos));
    pos = lf + 1;
  }
  // sh's 0 1 2, and at most the descriptor ls itself opened the directory with.
  for (const auto& fd : fds) EXPECT_NE(fd, std::to_string(leaked)) << r.out;
  EXPECT_LE(fds.size(), 4u) << r.out;
}

TEST(FilterProcessTest, ChildThatDoesNotReadItsInput) {
  std::string big(10u << 20, 'x');
  ProcessSpec s = Sh("echo done");
  s.input = big;
  ProcessResult r = Exec(s);  // EPIPE on stdin is the child's business, not an error (nor a SIGPIPE)
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out, "done\n");

  ProcessSpec part = Sh("head -c 10 >/dev/null; echo read");
  part.input = big;
  EXPECT_EQ(Exec(part).out, "read\n");
}

TEST(FilterProcessTest, BigInputAndOutputAtOnce) {
  std::string big(10u << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  ProcessSpec s;
  s.argv = {"/bin/cat"};
  s.input = big;
  ProcessResult r = Exec(s);  // no deadlock: stdin written while stdout is read
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out.size(), big.size());
  EXPECT_TRUE(r.out == big);
}

TEST(FilterProcessTest, OutputOverTheLimit) {
  ProcessSpec s;
  s.argv = {"/usr/bin/head", "-c", "104857600", "/dev/zero"};
  auto start = Clock::now();
  ProcessResult r = Exec(s);
  EXPECT_LT(ElapsedMs(start), 10000);
  EXPECT_TRUE(r.stdout_overflow);
  EXPECT_FALSE(r.ok());
  EXPECT_LE(r.out.size(), s.max_stdout);
  EXPECT_EQ(r.Describe({}), "output over 67108864 bytes");
}

TEST(FilterProcessTest, StderrIsCut) {
  ProcessSpec s = Sh("head -c 100000 /dev/zero | tr '\\0' e >&2; echo fine");
  s.max_stderr = 100;
  ProcessResult r = Exec(s);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.err, std::string(100, 'e'));
  EXPECT_EQ(r.out, "fine\n");
}

TEST(FilterProcessTest, MissingProgramIsAnIoError) {
  ProcessSpec s;
  s.argv = {"/nonexistent/holdfast-filter"};
  auto r = RunProcess(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kIo);
  EXPECT_NE(r.status().message().find("No such file"), std::string::npos) << r.status().message();

  s.argv = {"holdfast-no-such-program-anywhere"};
  r = RunProcess(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kIo);

  s.argv = {"/etc/hostname"};  // exists, not executable
  r = RunProcess(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kIo);
}

TEST(FilterProcessTest, ManyThreadsAtOnce) {
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &good] {
      for (int i = 0; i < 8; ++i) {
        ProcessSpec s;
        s.argv = {"/bin/cat"};
        std::string in = "thread " + std::to_string(t) + " run " + std::to_string(i) + std::string(70000, 'z');
        s.input = in;
        auto r = RunProcess(s);
        if (r.ok() && r->ok() && r->out == in) ++good[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(good[t], 8) << "thread " << t;
}

}  // namespace
}  // namespace holdfast
