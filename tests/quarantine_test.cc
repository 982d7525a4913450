// The quarantine store (spool/quarantine.h) and the filter ledger records
// of the spool log: round trips, and crash points of Put and Release (a
// message in quarantine is in exactly one place, whole).
#include "spool/quarantine.h"

#include <gtest/gtest.h>

#include "fs/sim_fs.h"
#include "spool/spool_log.h"

namespace holdfast {
namespace {

constexpr char kDir[] = "/data/quarantine";

SpoolMessage Msg(const std::string& body) {
  SpoolMessage m;
  m.id = MessageId::Generate();
  m.received_ms = 1700000000000;
  m.client = "127.0.0.1";
  m.helo = "mta";
  m.mail_from = "a@b.example";
  m.rcpts.push_back(SpoolRecipient{"alice@example.org", "alice", ""});
  m.body = body;
  return m;
}

QuarantineEntry Entry(const std::string& body) {
  QuarantineEntry e;
  e.msg = Msg(body);
  e.quarantined_ms = 1700000001000;
  e.reason = "scanner: signal 11 (SIGSEGV)";
  e.history = {"worker signal 9 (SIGKILL)", "scanner: signal 11 (SIGSEGV)"};
  return e;
}

bool Same(const QuarantineEntry& a, const QuarantineEntry& b) {
  return a.msg.id == b.msg.id && a.msg.body == b.msg.body && a.msg.mail_from == b.msg.mail_from &&
         a.msg.rcpts.size() == b.msg.rcpts.size() && a.reason == b.reason && a.history == b.history &&
         a.quarantined_ms == b.quarantined_ms;
}

TEST(Quarantine, PutListShowReleaseDelete) {
  SimFs fs;
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  Quarantine q(fs, kDir);
  ASSERT_TRUE(q.Open().ok());
  QuarantineEntry a = Entry(std::string("Subject: a\r\n\r\nnul\0byte\r\n", 24)), b = Entry("Subject: b\n\nb\n");
  ASSERT_TRUE(q.Put(a).ok());
  ASSERT_TRUE(q.Put(b).ok());
  ASSERT_TRUE(q.Put(a).ok());  // again: kept, not duplicated
  auto list = q.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  auto got = q.Get(a.msg.id);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(Same(*got, a));
  EXPECT_TRUE(q.Has(a.msg.id));
  EXPECT_FALSE(q.Has(MessageId::Generate()));

  ASSERT_TRUE(q.Release(a.msg.id, "root").ok());
  EXPECT_TRUE(q.Has(a.msg.id));  // still known: the server has not taken it back yet
  EXPECT_EQ(q.Get(a.msg.id).status().kind(), Status::Kind::kNotFound);
  auto rel = q.Released();
  ASSERT_TRUE(rel.ok());
  ASSERT_EQ(rel->size(), 1u);
  EXPECT_TRUE(Same((*rel)[0], a));
  ASSERT_TRUE(q.ForgetReleased(a.msg.id).ok());
  EXPECT_FALSE(q.Has(a.msg.id));

  ASSERT_TRUE(q.Delete(b.msg.id, "root").ok());
  EXPECT_EQ(q.Delete(b.msg.id, "root").kind(), Status::Kind::kNotFound);
  EXPECT_EQ(q.Release(b.msg.id, "root").kind(), Status::Kind::kNotFound);
  list = q.List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  auto audit = fs.ReadFile(std::string(kDir) + "/audit.log");
  ASSERT_TRUE(audit.ok());
  EXPECT_NE(audit->find("event=release id=" + a.msg.id.ToString() + " by=root"), std::string::npos) << *audit;
  EXPECT_NE(audit->find("event=delete id=" + b.msg.id.ToString() + " by=root"), std::string::npos) << *audit;
}

TEST(Quarantine, ParseRefusesDamage) {
  std::string good = Quarantine::Encode(Entry("Subject: x\n\nx\n"));
  EXPECT_TRUE(Quarantine::Parse(good).ok());
  EXPECT_FALSE(Quarantine::Parse(good.substr(0, good.size() - 1)).ok());
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x20;
  EXPECT_FALSE(Quarantine::Parse(flipped).ok());
  EXPECT_FALSE(Quarantine::Parse("").ok());
  EXPECT_FALSE(Quarantine::Parse(good + good).ok());
}

// Put, then Release, crashing after every Fs call: afterwards the entry is
// in exactly one place once Put returned, whole wherever it is, and where
// Release said it is once Release returned.
TEST(QuarantineCrash, PutThenRelease) {
  const QuarantineEntry e = Entry("Subject: poison\r\n\r\n" + std::string(3000, 'p') + "\r\n");
  size_t states = 0;
  for (uint64_t n = 1; n < 200; ++n) {
    SimFs fs;
    ASSERT_TRUE(fs.EnsureDir("/data").ok());
    {
      Quarantine q(fs, kDir);
      ASSERT_TRUE(q.Open().ok());
    }
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    bool put_ok = false, release_ok = false;
    {
      Quarantine q(fs, kDir);
      put_ok = q.Put(e).ok();
      if (put_ok) release_ok = q.Release(e.msg.id, "root").ok();
    }
    if (!fs.crashed()) {
      ASSERT_TRUE(put_ok && release_ok);
      ASSERT_GT(states, 0u);
      return;
    }
    for (const CrashChoice& choice : fs.ChoicesToTest(n, 6, 12)) {
      auto after = fs.AfterCrash(choice);
      SCOPED_TRACE("crash after op " + std::to_string(n) + " / " + choice.Describe());
      ++states;
      Quarantine q(*after, kDir);
      ASSERT_TRUE(q.Open().ok());
      auto listed = q.List();
      auto released = q.Released();
      ASSERT_TRUE(listed.ok() && released.ok());
      const size_t places = listed->size() + released->size();
      for (const auto& v : {*listed, *released}) {
        for (const auto& got : v) EXPECT_TRUE(Same(got, e)) << "partial or altered entry";
      }
      if (put_ok) EXPECT_EQ(places, 1u) << "a quarantined message must be in exactly one place";
      if (!put_ok) EXPECT_LE(places, 1u);
      if (release_ok) EXPECT_EQ(released->size(), 1u);
      auto tmp = after->ReadDir(std::string(kDir) + "/tmp");
      ASSERT_TRUE(tmp.ok());
      EXPECT_TRUE(tmp->empty()) << "Open left tmp/ files";
      if (::testing::Test::HasFailure()) return;
    }
  }
  FAIL() << "Put+Release still running after 200 crash points";
}

// The filter ledger: attempts and outcomes come back from the spool log.
TEST(SpoolLedger, AttemptsOutcomesAndDaemonDeaths) {
  SimFs fs;
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  SpoolMessage a = Msg("Subject: a\n\na\n"), b = Msg("Subject: b\n\nb\n"), c = Msg("Subject: c\n\nc\n");
  c.released = true;
  {
    auto log = SpoolLog::Open(fs, "/data/spool", {}, nullptr);
    ASSERT_TRUE(log.ok());
    for (auto* m : {&a, &b, &c}) ASSERT_TRUE((*log)->AppendMessage(*m).ok());
    ASSERT_TRUE((*log)->AppendAttempt({a.id, b.id}).ok());
    ASSERT_TRUE((*log)->AppendOutcome(a.id, FilterOutcome::kFailed, "scanner: exit 3").ok());
    ASSERT_TRUE((*log)->AppendOutcome(MessageId::Generate(), FilterOutcome::kFailed, "unknown: ignored").ok());
    ASSERT_TRUE((*log)->Sync().ok());
    EXPECT_TRUE((*log)->TracksReleased(c.id));
    EXPECT_FALSE((*log)->TracksReleased(a.id));
  }
  auto reopen = [&](std::map<MessageId, SpoolEntry>* out) {
    std::vector<SpoolEntry> got;
    auto log = SpoolLog::Open(fs, "/data/spool", {}, &got);
    EXPECT_TRUE(log.ok());
    out->clear();
    for (auto& e : got) (*out)[e.msg.id] = std::move(e);
    return std::move(log).value();
  };
  std::map<MessageId, SpoolEntry> got;
  {
    auto log = reopen(&got);
    EXPECT_EQ(got[a.id].ledger.failures, 1u);
    EXPECT_EQ(got[a.id].ledger.history, std::vector<std::string>{"scanner: exit 3"});
    EXPECT_EQ(got[a.id].ledger.in_flight_batch, 0u);
    EXPECT_EQ(got[b.id].ledger.in_flight_batch, 2u) << "b was in a worker when the daemon stopped";
    EXPECT_EQ(got[b.id].ledger.failures, 0u) << "sharing a batch is no proof";
    EXPECT_TRUE(got[c.id].msg.released);
    EXPECT_FALSE(got[a.id].msg.released);
    // b alone, twice, without an outcome: the first counts once the second starts.
    ASSERT_TRUE(log->AppendAttempt({b.id}).ok());
    ASSERT_TRUE(log->AppendAttempt({b.id}).ok());
    ASSERT_TRUE(log->AppendDone(c.id, 0, RcptState::kQuarantined).ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  {
    auto log = reopen(&got);
    EXPECT_EQ(got[b.id].ledger.failures, 1u);
    EXPECT_EQ(got[b.id].ledger.in_flight_batch, 1u);
    EXPECT_EQ(got.count(c.id), 0u) << "quarantined is retired";
    ASSERT_TRUE(log->AppendOutcome(b.id, FilterOutcome::kTempFail, "rspamd down").ok());
    ASSERT_TRUE(log->Sync().ok());
  }
  reopen(&got);
  EXPECT_EQ(got[b.id].ledger.failures, 1u) << "a temporary failure does not count";
  EXPECT_EQ(got[b.id].ledger.in_flight_batch, 0u);
}

}  // namespace
}  // namespace holdfast
