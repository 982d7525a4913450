// RunFilterWorker driven over real pipes, with real /bin/sh filter scripts.
#include "filter/worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "filter/protocol.h"

namespace holdfast {
namespace {

using std::chrono::milliseconds;


// A stand-in for rspamd on a loopback port: reads each HTTP request whole
// and answers every one with the same canned response.
class FakeRspamd {
 public:
  explicit FakeRspamd(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeRspamd() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  static std::string Json(const std::string& json, int status = 200) {
    return "HTTP/1.1 " + std::to_string(status) + " OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
           "Content-Length: " + std::to_string(json.size()) + "\r\n\r\n" + json;
  }
  std::string last_request() {
    std::lock_guard<std::mutex> l(mu_);
    return last_request_;
  }

 private:
  void Serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string req;
      char buf[65536];
      while (true) {
        auto end = req.find("\r\n\r\n");
        if (end != std::string::npos) {
          std::string head = req.substr(0, end);
          for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          auto cl = head.find("content-length:");
          if (cl != std::string::npos && req.size() >= end + 4 + std::stoul(head.substr(cl + 15))) break;
          if (head.find("chunked") != std::string::npos && req.ends_with("0\r\n\r\n")) break;
        }
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        last_request_ = req;
      }
      (void)!::write(c, response_.data(), response_.size());
      ::close(c);
    }
  }
  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string last_request_;
};

class FilterWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/holdfast-filter-worker-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // An executable /bin/sh script in the temp dir; returns its path.
  std::string Script(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    ::chmod(path.c_str(), 0755);
    return path;
  }

  FilterStep Command(const std::string& name, const std::string& body, bool rewrite = false) {
    FilterStep s;
    s.kind = FilterStep::Kind::kCommand;
    s.name = name;
    s.argv = {Script(name, body)};
    s.rewrite = rewrite;
    s.timeout = milliseconds(10000);
    return s;
  }

  static FilterInput Message(const std::string& body) {
    FilterInput in;
    in.id = MessageId::Generate();
    in.client = "192.0.2.7";
    in.helo = "mx.example.org";
    in.mail_from = "alice@example.org";
    in.rcpts = {"bob@example.org", "carol@example.org"};
    in.body = body;
    return in;
  }

  struct WorkerRun {
    int rc = -1;
    VerdictStream stream;
    std::string err;
  };

  // The batch written into a pipe by one thread, the worker reading it and
  // writing verdicts into another pipe, the test reading those.
  WorkerRun RunWorker(const FilterOptions& opts, const std::vector<FilterInput>& batch) {
    std::string bytes;
    for (const auto& in : batch) bytes += EncodeFilterInput(in);
    return RunBytes(opts, bytes, batch.size());
  }

  static std::string ReadAll(int fd) {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  WorkerRun RunBytes(const FilterOptions& opts, const std::string& bytes, size_t expected) {
    int in[2], out[2], err[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    std::thread writer([&] {
      size_t done = 0;
      while (done < bytes.size()) {
        ssize_t n = ::write(in[1], bytes.data() + done, bytes.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      ::close(in[1]);
    });
    auto err_text = std::async(std::launch::async, [&] { return ReadAll(err[0]); });
    auto out_text = std::async(std::launch::async, [&] { return ReadAll(out[0]); });
    WorkerRun r;
    r.rc = RunFilterWorker(opts, in[0], out[1], err[1]);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    writer.join();
    r.stream = DecodeVerdicts(out_text.get(), expected);
    r.err = err_text.get();
    ::close(out[0]);
    ::close(err[0]);
    return r;
  }

  Verdict RunOne(const FilterOptions& opts, const std::string& body) {
    WorkerRun r = RunWorker(opts, {Message(body)});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(r.stream.complete) << r.stream.error;
    return r.stream.verdicts.empty() ? Verdict{} : r.stream.verdicts[0];
  }

  std::string dir_;
};

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

TEST_F(FilterWorkerTest, NoChainDeliversUnchanged) {
  WorkerRun r = RunWorker(FilterOptions{}, {Message("a\n"), Message("b\n")});
  EXPECT_EQ(r.rc, 0);
  ASSERT_TRUE(r.stream.complete) << r.stream.error;
  for (const Verdict& v : r.stream.verdicts) {
    EXPECT_EQ(v.kind, Verdict::Kind::kDeliver);
    EXPECT_FALSE(v.rewritten);
    EXPECT_EQ(v.folder, "");
  }
}

TEST_F(FilterWorkerTest, Directives) {
  FilterOptions opts;
  opts.chain = {Command("scanner", "cat >/dev/null\necho 'header X-Scanned: yes'\necho 'header X-Score:   2.5'\n"
                                   "echo\necho 'folder Junk'\n")};
  Verdict v = RunOne(opts, "Subject: hi\n\nbody\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver);
  EXPECT_EQ(v.folder, "Junk");
  EXPECT_TRUE(v.rewritten);
  EXPECT_EQ(v.body, "X-Scanned: yes\nX-Score: 2.5\nSubject: hi\n\nbody\n");
  EXPECT_EQ(v.trail, "scanner: deliver, 2 headers, folder Junk");
}

TEST_F(FilterWorkerTest, CrlfMessageKeepsCrlfInAddedHeaders) {
  FilterOptions opts;
  opts.chain = {Command("scanner", "printf 'header X-Scanned: yes\\r\\n'\n")};
  Verdict v = RunOne(opts, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(v.body, "X-Scanned: yes\r\nSubject: hi\r\n\r\nbody\r\n");
}

TEST_F(FilterWorkerTest, Environment) {
  FilterOptions opts;
  opts.chain = {Command("env", "echo \"header X-Env: $HOLDFAST_MESSAGE_ID $HOLDFAST_SENDER $HOLDFAST_RECIPIENTS "
                               "$HOLDFAST_CLIENT $HOLDFAST_HELO\"\n")};
  FilterInput in = Message("S: x\n\n");
  WorkerRun r = RunWorker(opts, {in});
  ASSERT_TRUE(r.stream.complete) << r.stream.error;
  EXPECT_EQ(r.stream.verdicts[0].body, "X-Env: " + in.id.ToString() +
                                           " alice@example.org bob@example.org,carol@example.org 192.0.2.7 "
                                           "mx.example.org\nS: x\n\n");
}

TEST_F(FilterWorkerTest, QuarantineAndDiscard) {
  FilterOptions opts;
  opts.chain = {Command("av", "msg=$(cat)\n"
                              "if echo \"$msg\" | grep -q EICAR; then echo 'header X-Ignored: 1';"
                              " echo 'quarantine virus Eicar found'; echo 'discard too late'; fi\n"
                              "if echo \"$msg\" | grep -q BOUNCE; then echo discard; fi\n")};
  WorkerRun r = RunWorker(opts, {Message("EICAR\n"), Message("BOUNCE\n"), Message("clean\n")});
  ASSERT_TRUE(r.stream.complete) << r.stream.error;
  EXPECT_EQ(r.stream.verdicts[0].kind, Verdict::Kind::kQuarantine);
  EXPECT_EQ(r.stream.verdicts[0].reason, "av: quarantine virus Eicar found");
  EXPECT_FALSE(r.stream.verdicts[0].rewritten);
  EXPECT_EQ(r.stream.verdicts[1].kind, Verdict::Kind::kDiscard);
  EXPECT_EQ(r.stream.verdicts[1].reason, "av: discard no reason given");
  EXPECT_EQ(r.stream.verdicts[2].kind, Verdict::Kind::kDeliver);
  EXPECT_FALSE(r.stream.verdicts[2].rewritten);
}

TEST_F(FilterWorkerTest, Rewrite) {
  FilterOptions opts;
  opts.chain = {Command("sed", "sed 's/secret/[redacted]/'\n", true)};
  Verdict v = RunOne(opts, "Subject: s\n\nthe secret\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver);
  EXPECT_TRUE(v.rewritten);
  EXPECT_EQ(v.body, "Subject: s\n\nthe [redacted]\n");
  EXPECT_EQ(v.trail, "sed: rewrote (27 bytes)");

  opts.chain = {Command("eater", "cat >/dev/null\n", true)};
  Verdict empty = RunOne(opts, "x\n");
  EXPECT_EQ(empty.kind, Verdict::Kind::kFailed);
  EXPECT_EQ(empty.reason, "eater: garbage output: empty message from a rewrite filter");
}

TEST_F(FilterWorkerTest, TempFail) {
  FilterOptions opts;
  opts.chain = {Command("clamd", "echo 'cannot connect to clamd' >&2; exit 75\n")};
  Verdict v = RunOne(opts, "x\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kTempFail);
  EXPECT_EQ(v.reason, "clamd: exit 75 (temporary failure); stderr: cannot connect to clamd");

  FilterStep missing;
  missing.name = "gone";
  missing.argv = {dir_ + "/no-such-filter"};
  opts.chain = {missing};
  Verdict m = RunOne(opts, "x\n");
  EXPECT_EQ(m.kind, Verdict::Kind::kTempFail);
  EXPECT_EQ(m.reason, "gone: cannot run " + dir_ + "/no-such-filter: No such file or directory");
}

TEST_F(FilterWorkerTest, Garbage) {
  FilterOptions opts;
  opts.chain = {Command("chatty", "echo 'header X-Ok: 1'\nprintf 'Hello\\tworld\\001 and a very long line that goes on "
                                  "and on and on and on and on and on and on and on\\n'\n")};
  Verdict v = RunOne(opts, "x\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kFailed);
  EXPECT_EQ(v.reason,
            "chatty: garbage output: Hello\\tworld\\x01 and a very long line that goes on and on and on and on and "
            "on a...");

  for (const char* bad : {"folder ../etc", "folder .Junk", "header NoColon", "header X-A B: c", "Folder Junk"}) {
    opts.chain = {Command("bad", std::string("echo '") + bad + "'\n")};
    Verdict b = RunOne(opts, "x\n");
    EXPECT_EQ(b.kind, Verdict::Kind::kFailed) << bad;
    EXPECT_CONTAINS(b.reason, std::string("bad: garbage output: ") + bad);
  }
  opts.chain = {Command("inbox", "echo 'folder Junk'; echo 'folder inbox'\n")};
  EXPECT_EQ(RunOne(opts, "x\n").folder, "");
}

TEST_F(FilterWorkerTest, FailuresNameTheirKind) {
  FilterOptions opts;
  opts.chain = {Command("crashy", "echo 'about to crash' >&2; kill -SEGV $$\n")};
  Verdict seg = RunOne(opts, "x\n");
  EXPECT_EQ(seg.kind, Verdict::Kind::kFailed);
  EXPECT_EQ(seg.reason, "crashy: signal 11 (SIGSEGV); stderr: about to crash");

  opts.chain = {Command("exit3", "echo 'line one' >&2; echo 'line two' >&2; exit 3\n")};
  Verdict three = RunOne(opts, "x\n");
  EXPECT_EQ(three.reason, "exit3: exit 3; stderr: line one\\nline two");

  opts.chain = {Command("slow", "sleep 10\n")};
  opts.chain[0].timeout = milliseconds(200);
  Verdict slow = RunOne(opts, "x\n");
  EXPECT_EQ(slow.kind, Verdict::Kind::kFailed);
  EXPECT_EQ(slow.reason, "slow: timeout after 200 ms");

}

TEST_F(FilterWorkerTest, MemoryLimitIsNamed) {
  FilterOptions opts;
  opts.chain = {Command("hog", "exec python3 -c 'x = []\nwhile True: x.append(bytearray(1 << 20))'\n")};
  opts.chain[0].timeout = milliseconds(20000);  // python is slow to die on a busy machine
  opts.memory_bytes = 100u << 20;
  Verdict hog = RunOne(opts, "x\n");
  EXPECT_EQ(hog.kind, Verdict::Kind::kFailed);
  EXPECT_CONTAINS(hog.reason, "hog: memory limit (100 MiB); stderr: ");
  EXPECT_TRUE(hog.reason.ends_with("MemoryError")) << hog.reason;
}

TEST_F(FilterWorkerTest, PoisonKeepsBatchOrder) {
  FilterOptions opts;
  opts.chain = {Command("scanner", "if grep -q POISON; then kill -SEGV $$; fi\necho \"header X-Seen: $HOLDFAST_SENDER\"\n")};
  std::vector<FilterInput> batch;
  for (int i = 0; i < 6; ++i) {
    batch.push_back(Message(i == 2 || i == 4 ? "POISON\n" : "fine\n"));
    batch.back().mail_from = "m" + std::to_string(i) + "@example.org";
  }
  WorkerRun r = RunWorker(opts, batch);
  EXPECT_EQ(r.rc, 0);
  ASSERT_TRUE(r.stream.complete) << r.stream.error;
  ASSERT_EQ(r.stream.verdicts.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    const Verdict& v = r.stream.verdicts[i];
    if (i == 2 || i == 4) {
      EXPECT_EQ(v.kind, Verdict::Kind::kFailed) << i;
      EXPECT_EQ(v.reason, "scanner: signal 11 (SIGSEGV)");
    } else {
      EXPECT_EQ(v.kind, Verdict::Kind::kDeliver) << i;
      EXPECT_EQ(v.body, "X-Seen: m" + std::to_string(i) + "@example.org\nfine\n");
    }
  }
}

TEST_F(FilterWorkerTest, ChainAccumulatesAndStops) {
  FilterOptions opts;
  std::string marker = dir_ + "/third-ran";
  opts.chain = {Command("one", "echo 'header X-One: 1'; echo 'folder First'\n"),
                // Sees the first step's header; its folder wins.
                Command("two", "if grep -q '^X-One: 1' ; then echo 'header X-Two: saw-one'; fi; echo 'folder Second'\n"),
                Command("three", "cat; echo 'appended'\n", true)};
  Verdict v = RunOne(opts, "S: x\n\nbody\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver);
  EXPECT_EQ(v.folder, "Second");
  EXPECT_EQ(v.body, "X-Two: saw-one\nX-One: 1\nS: x\n\nbody\nappended\n");
  EXPECT_EQ(v.trail, "one: deliver, 1 header, folder First; two: deliver, 1 header, folder Second; three: rewrote (44 bytes)");

  opts.chain = {Command("one", "echo 'header X-One: 1'\n"), Command("two", "echo 'quarantine stop here'\n"),
                Command("three", "touch " + marker + "\n")};
  Verdict q = RunOne(opts, "S: x\n\nbody\n");
  EXPECT_EQ(q.kind, Verdict::Kind::kQuarantine);
  EXPECT_EQ(q.reason, "two: quarantine stop here");
  EXPECT_EQ(q.trail, "one: deliver, 1 header; two: quarantine stop here");
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST_F(FilterWorkerTest, UnreachableRspamdIsTemporary) {
  FilterOptions opts;
  FilterStep rspamd;
  rspamd.kind = FilterStep::Kind::kRspamd;
  rspamd.name = "rspamd";
  rspamd.rspamd_address = "127.0.0.1:1";  // nothing listens there
  rspamd.timeout = milliseconds(1000);
  opts.chain = {rspamd};
  Verdict v = RunOne(opts, "S: x\n\nbody\n");
  EXPECT_EQ(v.kind, Verdict::Kind::kTempFail);
  EXPECT_CONTAINS(v.reason, "rspamd: unavailable: ");
}

FilterStep RspamdStep(const std::string& address) {
  FilterStep s;
  s.kind = FilterStep::Kind::kRspamd;
  s.name = "rspamd";
  s.rspamd_address = address;
  s.timeout = milliseconds(2000);
  return s;
}

// rspamd's JSON, as 3.4 writes it (milter block with add/remove headers).
std::string SpamReply(const std::string& action, double score, const std::string& extra = "") {
  char s[32];
  std::snprintf(s, sizeof s, "%.6f", score);
  return FakeRspamd::Json("{\"is_skipped\":false,\"score\":" + std::string(s) +
                          ",\"required_score\":15.0,\"action\":\"" + action + "\"" + extra +
                          ",\"symbols\":{\"TEST_SYMBOL\":{\"name\":\"TEST_SYMBOL\",\"score\":1.0}},\"messages\":{},"
                          "\"milter\":{\"add_headers\":{\"X-Spamd-Result\":{\"value\":\"default: False [1.00 / "
                          "15.00];\\r\\n\\tTEST_SYMBOL(1.00)[]\",\"order\":-1},\"X-Spam-Status\":{\"value\":\"Yes, "
                          "score=1.00\",\"order\":-1}},\"remove_headers\":{\"X-Spam\":0,\"X-Spam-Status\":0}}}");
}

// Skips when the rspamd client is the uncommitted stand-in of a branch that
// does not have it yet (src/filter/rspamd.cc comes with the other branch).
#define SKIP_WITHOUT_RSPAMD_CLIENT(v)                                                    \
  if ((v).reason.find("rspamd client not built") != std::string::npos) {                \
    GTEST_SKIP() << "no rspamd client in this build";                                    \
  }

TEST_F(FilterWorkerTest, RspamdNoActionLeavesTheMessageAlone) {
  FakeRspamd fake(SpamReply("no action", 0.5));
  FilterOptions opts;
  opts.chain = {RspamdStep(fake.address())};
  FilterInput in = Message("Subject: hi\r\n\r\nbody\r\n");
  WorkerRun r = RunWorker(opts, {in});
  ASSERT_TRUE(r.stream.complete) << r.stream.error;
  const Verdict& v = r.stream.verdicts[0];
  SKIP_WITHOUT_RSPAMD_CLIENT(v);
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver) << v.reason;
  EXPECT_FALSE(v.rewritten);
  EXPECT_EQ(v.folder, "");
  EXPECT_EQ(v.trail, "rspamd: no action (0.50/15.00)");
  EXPECT_NE(fake.last_request().find("body\r\n"), std::string::npos);
}

TEST_F(FilterWorkerTest, RspamdAddHeader) {
  FakeRspamd fake(SpamReply("add header", 7.2));
  FilterOptions opts;
  opts.chain = {RspamdStep(fake.address())};
  Verdict v = RunOne(opts, "X-Spam: forged\r\nSubject: hi\r\nX-Spam-Status: No\r\n\r\nX-Spam: in the body\r\n");
  SKIP_WITHOUT_RSPAMD_CLIENT(v);
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver) << v.reason;
  EXPECT_EQ(v.folder, "");
  EXPECT_EQ(v.trail, "rspamd: add header (7.20/15.00)");
  ASSERT_TRUE(v.rewritten);
  EXPECT_TRUE(v.body.starts_with("X-Spam: Yes\r\n")) << v.body;
  EXPECT_CONTAINS(v.body, "\r\nX-Spamd-Result: default: False [1.00 / 15.00];\r\n\tTEST_SYMBOL(1.00)[]\r\n");
  EXPECT_CONTAINS(v.body, "\r\nX-Spam-Status: Yes, score=1.00\r\n");
  // rspamd's remove_headers: the forged ones go, the body is not touched.
  EXPECT_EQ(v.body.find("forged"), std::string::npos) << v.body;
  EXPECT_EQ(v.body.find("X-Spam-Status: No"), std::string::npos) << v.body;
  EXPECT_TRUE(v.body.ends_with("Subject: hi\r\n\r\nX-Spam: in the body\r\n")) << v.body;
}

TEST_F(FilterWorkerTest, RspamdRewriteSubject) {
  FakeRspamd fake(SpamReply("rewrite subject", 9.9, ",\"subject\":\"***SPAM*** hi there\""));
  FilterOptions opts;
  opts.chain = {RspamdStep(fake.address())};
  Verdict v = RunOne(opts, "From: a@example.org\nSubject: hi\n there\nTo: b@example.org\n\nSubject: body\n");
  SKIP_WITHOUT_RSPAMD_CLIENT(v);
  EXPECT_EQ(v.kind, Verdict::Kind::kDeliver) << v.reason;
  EXPECT_EQ(v.trail, "rspamd: rewrite subject (9.90/15.00)");
  EXPECT_CONTAINS(v.body, "\nSubject: ***SPAM*** hi there\nTo: b@example.org\n\nSubject: body\n");
  EXPECT_EQ(v.body.find(" there\nTo"), v.body.find("hi there\nTo") + 2);  // the old fold is gone
  EXPECT_EQ(v.body.find("\r\n"), std::string::npos) << "LF message stays LF";
}

TEST_F(FilterWorkerTest, RspamdRejectToJunkOrQuarantine) {
  FakeRspamd fake(SpamReply("reject", 20));
  FilterOptions opts;
  opts.chain = {RspamdStep(fake.address())};
  opts.chain[0].junk_folder = "Spam";
  Verdict junk = RunOne(opts, "Subject: buy\r\n\r\nnow\r\n");
  SKIP_WITHOUT_RSPAMD_CLIENT(junk);
  EXPECT_EQ(junk.kind, Verdict::Kind::kDeliver) << junk.reason;
  EXPECT_EQ(junk.folder, "Spam");
  EXPECT_TRUE(junk.body.starts_with("X-Spam: Yes\r\n"));
  EXPECT_EQ(junk.trail, "rspamd: reject (20.00/15.00), folder Spam");

  opts.chain[0].reject_to_quarantine = true;
  Verdict q = RunOne(opts, "Subject: buy\r\n\r\nnow\r\n");
  EXPECT_EQ(q.kind, Verdict::Kind::kQuarantine);
  EXPECT_EQ(q.reason, "rspamd: reject (20.00/15.00)");
  EXPECT_FALSE(q.rewritten);

  FakeRspamd soft(SpamReply("soft reject", 16));
  opts.chain = {RspamdStep(soft.address())};
  Verdict s = RunOne(opts, "Subject: buy\r\n\r\nnow\r\n");
  EXPECT_EQ(s.folder, "Junk");
}

TEST_F(FilterWorkerTest, RspamdBadRepliesAndErrors) {
  FakeRspamd garbage(FakeRspamd::Json("this is not json"));
  FilterOptions opts;
  opts.chain = {RspamdStep(garbage.address())};
  Verdict g = RunOne(opts, "S: x\n\nbody\n");
  SKIP_WITHOUT_RSPAMD_CLIENT(g);
  EXPECT_EQ(g.kind, Verdict::Kind::kFailed);
  EXPECT_CONTAINS(g.reason, "rspamd: bad reply: ");

  FakeRspamd down(FakeRspamd::Json("{\"error\":\"overloaded\"}", 503));
  opts.chain = {RspamdStep(down.address())};
  Verdict d = RunOne(opts, "S: x\n\nbody\n");
  EXPECT_EQ(d.kind, Verdict::Kind::kTempFail);
  EXPECT_CONTAINS(d.reason, "rspamd: unavailable: ");
}

TEST_F(FilterWorkerTest, VerdictsAreWrittenAsSoonAsDecided) {
  // Message 1's filter waits until the test has seen message 0's verdict: a
  // worker that dies on message 1 has still settled message 0.
  std::string go = dir_ + "/go";
  FilterOptions opts;
  opts.chain = {Command("gate", "if grep -q WAIT; then while [ ! -e " + go + " ]; do sleep 0.01; done; fi\n")};
  opts.chain[0].timeout = milliseconds(10000);
  std::string bytes = EncodeFilterInput(Message("first\n")) + EncodeFilterInput(Message("WAIT\n"));
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(::write(in[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(in[1]);
  int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  auto rc = std::async(std::launch::async, [&] { return RunFilterWorker(opts, in[0], out[1], devnull); });

  std::string got;
  char buf[4096];
  auto start = std::chrono::steady_clock::now();
  while (DecodeVerdicts(got, 2).verdicts.empty()) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(8000));
  EXPECT_EQ(DecodeVerdicts(got, 2).verdicts.size(), 1u);  // the second is still waiting
  std::ofstream(go) << "";
  EXPECT_EQ(rc.get(), 0);
  ::close(out[1]);
  got += ReadAll(out[0]);
  VerdictStream s = DecodeVerdicts(got, 2);
  EXPECT_TRUE(s.complete) << s.error;
  ASSERT_EQ(s.verdicts.size(), 2u);
  EXPECT_EQ(s.verdicts[1].kind, Verdict::Kind::kDeliver);
  ::close(in[0]);
  ::close(out[0]);
  ::close(devnull);
}

TEST_F(FilterWorkerTest, GarbageInputIsRefused) {
  FilterOptions opts;
  std::string marker = dir_ + "/ran";
  opts.chain = {Command("never", "touch " + marker + "\n")};
  std::string good = EncodeFilterInput(Message("x\n"));
  WorkerRun r = RunBytes(opts, good + "this is not a frame", 1);
  EXPECT_EQ(r.rc, EX_DATAERR);
  EXPECT_TRUE(r.stream.verdicts.empty());
  EXPECT_CONTAINS(r.err, "holdfast filter-worker: bad batch: ");
  EXPECT_FALSE(std::filesystem::exists(marker));

  WorkerRun torn = RunBytes(opts, good.substr(0, good.size() - 1), 1);
  EXPECT_EQ(torn.rc, EX_DATAERR);
  EXPECT_TRUE(torn.stream.verdicts.empty());
}

}  // namespace
}  // namespace holdfast

namespace holdfast {
namespace {

// The built-in trace step: a Received: line on top, in the message's own
// line ending, naming the client, the server and the MessageId, dated when
// the message was received (the MessageId's time).
TEST(FilterTraceStep, AddsAReceivedLine) {
  FilterOptions opts;
  opts.hostname = "mx.example.org";
  FilterStep trace;
  trace.kind = FilterStep::Kind::kTrace;
  trace.name = "trace";
  opts.chain = {trace};
  FilterInput in;
  in.id = MessageId::Generate();
  in.client = "192.0.2.7:40123";
  in.helo = "mta.example.net";
  in.mail_from = "a@example.net";
  in.rcpts = {"b@example.org"};
  for (const std::string eol : {"\r\n", "\n"}) {
    in.body = "Subject: hi" + eol + eol + "body" + eol;
    Verdict v = RunFilterChain(opts, in);
    ASSERT_EQ(v.kind, Verdict::Kind::kDeliver);
    ASSERT_TRUE(v.rewritten);
    const std::string want_start = "Received: from mta.example.net ([192.0.2.7])" + eol + "\tby mx.example.org (holdfast) with LMTP id " +
                                   in.id.ToString() + ";" + eol + "\t";
    EXPECT_EQ(v.body.substr(0, want_start.size()), want_start) << v.body;
    EXPECT_NE(v.body.find("+0000" + eol + "Subject: hi" + eol + eol + "body" + eol), std::string::npos) << v.body;
    EXPECT_EQ(v.trail, "trace: received line");
  }
  in.client = "local";
  in.body = "x\n";
  EXPECT_EQ(RunFilterChain(opts, in).body.rfind("Received: from mta.example.net (local)\n\tby ", 0), 0u);
}

}  // namespace
}  // namespace holdfast
