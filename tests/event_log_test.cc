// The event log (events/event_log.h) and `holdfast trace`'s queries
// (events/trace.h): round trips, retention, damaged files, and crash points
// of appending (what a reader finds after any crash is a prefix of what was
// appended, with everything synced in it).
#include "events/event_log.h"

#include <gtest/gtest.h>

#include "core/trace_headers.h"
#include "events/trace.h"
#include "fs/sim_fs.h"
#include "util/record_log.h"

namespace holdfast {
namespace {

constexpr char kDir[] = "/data/events";
constexpr int64_t kDay = 86400000;
constexpr int64_t kT0 = 1764979200000;  // 2025-12-06T00:00:00Z

EventLog::Options TestOptions() {
  EventLog::Options o;
  o.flusher = false;
  return o;
}

std::vector<Event> ReadAll(Fs& fs, std::vector<std::string>* warnings) {
  auto r = ReadEvents(fs, kDir, EventFilter{}, warnings);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<Event>{};
}

TEST(EventLog, EncodeDecodeRoundTrip) {
  Event e("received", "01JF8Z4X2Q7B3M9T6V5W4Y3Z2A");
  e.time_ms = kT0 + 1234;
  e.Add("client", "127.0.0.1").Add("to", "a@b,c@d").Add("empty", "").Add("bytes", std::string("x\0y\n", 4));
  Event back;
  ASSERT_TRUE(DecodeEvent(EncodeEvent(e), &back));
  EXPECT_EQ(back.time_ms, e.time_ms);
  EXPECT_EQ(back.kind, "received");
  EXPECT_EQ(back.id, e.id);
  EXPECT_EQ(back.fields, e.fields);
  ASSERT_NE(back.Field("to"), nullptr);
  EXPECT_EQ(*back.Field("to"), "a@b,c@d");
  EXPECT_EQ(back.Field("nope"), nullptr);
  // Cut anywhere: refused, never half-read.
  const std::string bytes = EncodeEvent(e);
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(DecodeEvent(bytes.substr(0, n), &back)) << n;
  EXPECT_FALSE(DecodeEvent(bytes + "x", &back));
}

TEST(EventLog, AppendThenReadInTimeOrder) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/data").ok());
  {
    auto log = EventLog::Open(fs, kDir, TestOptions());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    Event late("delivered", "B");
    late.time_ms = kT0 + 20;
    Event early("received", "B");
    early.time_ms = kT0 + 10;
    (*log)->Append({late, early});
    (*log)->Append(Event("received", "C"));  // time filled in: now
    EXPECT_EQ((*log)->appended(), 3u);
    EXPECT_EQ((*log)->errors(), 0u);
  }
  std::vector<std::string> warnings;
  auto all = ReadAll(fs, &warnings);
  EXPECT_TRUE(warnings.empty());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].kind, "received");
  EXPECT_EQ(all[1].kind, "delivered");
  EXPECT_EQ(all[2].id, "C");
  EXPECT_GT(all[2].time_ms, kT0);
}

TEST(EventLog, FileNamesCarryTheDayAndRetentionDropsOldDays) {
  EXPECT_EQ(EventFileDay("20251206-000000-1-0.events"), kT0 / kDay);
  EXPECT_EQ(EventFileDay("2025120-000000-1-0.events"), -1);
  EXPECT_EQ(EventFileDay("20251306-000000-1-0.events"), -1);
  EXPECT_EQ(FormatEventTime(kT0 + 3723004), "2025-12-06T01:02:03.004Z");
  EXPECT_EQ(FormatEventTime(-1), "@-1");
  EXPECT_EQ(FormatEventTime(INT64_MIN), "@" + std::to_string(INT64_MIN));

  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/data").ok());
  // Opened first: its own pruning at Open uses the real clock.
  auto log = EventLog::Open(fs, kDir, TestOptions());
  ASSERT_TRUE(log.ok());
  auto put = [&](const std::string& name) {
    auto f = fs.CreateExclusive(std::string(kDir) + "/" + name);
    ASSERT_TRUE(f.ok());
    Event e("received", name.substr(0, 8));
    e.time_ms = EventFileDay(name) * kDay + 5;
    ASSERT_TRUE((*f)->Append(EncodeRecord(EventLog::kRecordType, EncodeEvent(e))).ok());
  };
  put("20251101-120000-7-0.events");  // 35 days before kT0
  put("20251105-120000-7-0.events");  // 31 days
  put("20251106-120000-7-0.events");  // 30 days: kept
  put("20251205-120000-7-0.events");
  put("notes.txt");
  (*log)->Prune(kT0 + 1000);
  auto names = fs.ReadDir(kDir);
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"20251106-120000-7-0.events", "20251205-120000-7-0.events", "notes.txt"}));

  // Reading with a window skips whole files outside it.
  std::vector<std::string> warnings;
  EventFilter f;
  f.since_ms = kT0 - kDay;  // 2025-12-05
  auto r = ReadEvents(fs, kDir, f, &warnings);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].id, "20251205");
}

TEST(EventLog, RetentionZeroKeepsEverything) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/data").ok());
  ASSERT_TRUE(fs.MkDir(kDir).ok());
  ASSERT_TRUE(fs.CreateExclusive(std::string(kDir) + "/20000101-000000-1-0.events").ok());
  EventLog::Options o = TestOptions();
  o.retention_days = 0;
  auto log = EventLog::Open(fs, kDir, o);
  ASSERT_TRUE(log.ok());
  (*log)->Prune(kT0);
  EXPECT_TRUE(fs.Stat(std::string(kDir) + "/20000101-000000-1-0.events").ok());
}

TEST(EventLog, DamageIsReportedAndWhatChecksOutIsKept) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/data").ok());
  ASSERT_TRUE(fs.MkDir(kDir).ok());
  std::string good;
  for (int i = 0; i < 3; ++i) {
    Event e("received", "M" + std::to_string(i));
    e.time_ms = kT0 + i;
    good += EncodeRecord(EventLog::kRecordType, EncodeEvent(e));
  }
  std::string damaged = good;
  damaged[kRecordHeaderSize + 20] ^= 0x55;  // inside the first event
  auto f = fs.CreateExclusive(std::string(kDir) + "/20251206-000000-1-0.events");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(damaged).ok());
  // And a torn tail in another file: the crash's last append, not a warning.
  auto g = fs.CreateExclusive(std::string(kDir) + "/20251206-000001-1-0.events");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE((*g)->Append(good.substr(0, good.size() - 3)).ok());
  std::vector<std::string> warnings;
  auto all = ReadAll(fs, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("damaged"), std::string::npos) << warnings[0];
  // File 1: M1, M2 salvaged; file 2: M0, M1.
  EXPECT_EQ(all.size(), 4u);
}

// Crash after every mutating operation of a run of appends and syncs: the
// events a reader finds are a prefix of those appended, in order, whole,
// and hold every event synced before the crash; and the next writer works.
TEST(EventLogCrash, EveryCrashPointLeavesAPrefixWithEverythingSynced) {
  const int kEvents = 7;
  for (uint64_t n = 1;; ++n) {
    SCOPED_TRACE("crash after op " + std::to_string(n));
    SimFs fs;
    ASSERT_TRUE(fs.MkDir("/data").ok());
    auto log = EventLog::Open(fs, kDir, TestOptions());
    ASSERT_TRUE(log.ok());
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    uint64_t synced = 0;
    for (int i = 0; i < kEvents; ++i) {
      Event e("received", "M" + std::to_string(i));
      e.Add("n", std::to_string(i));
      (*log)->Append(std::move(e));
      if (i % 2 == 1 && (*log)->Sync().ok()) synced = (*log)->appended();
    }
    if (!fs.crashed()) {
      ASSERT_TRUE((*log)->Sync().ok());
      EXPECT_EQ((*log)->appended(), static_cast<uint64_t>(kEvents));
      break;
    }
    const uint64_t appended = (*log)->appended();
    for (const CrashChoice& choice : fs.ChoicesToTest(n)) {
      SCOPED_TRACE(choice.Describe());
      auto after = fs.AfterCrash(choice);
      std::vector<std::string> warnings;
      auto got = ReadAll(*after, &warnings);
      EXPECT_TRUE(warnings.empty()) << warnings.front();
      EXPECT_GE(got.size(), synced);
      EXPECT_LE(got.size(), appended);
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].id, "M" + std::to_string(i));
        ASSERT_NE(got[i].Field("n"), nullptr);
        EXPECT_EQ(*got[i].Field("n"), std::to_string(i));
      }
      // A new writer after the reboot never appends to the old file.
      {
        auto again = EventLog::Open(*after, kDir, TestOptions());
        ASSERT_TRUE(again.ok()) << again.status().ToString();
        (*again)->Append(Event("delivered", "M0"));
        ASSERT_TRUE((*again)->Sync().ok());
      }
      auto now = ReadAll(*after, &warnings);
      EXPECT_EQ(now.size(), got.size() + 1);
      EXPECT_TRUE(warnings.empty());
    }
    if (n > 200) FAIL() << "did not finish";
  }
}

TEST(EventLog, AppendFailureIsCountedNotThrown) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/data").ok());
  auto log = EventLog::Open(fs, kDir, TestOptions());
  ASSERT_TRUE(log.ok());
  fs.SetCrashAfter(1);  // the file's creation is the last thing that works
  (*log)->Append(Event("received", "A"));
  (*log)->Append(Event("received", "B"));
  EXPECT_EQ((*log)->appended(), 0u);
  EXPECT_EQ((*log)->errors(), 2u);
  EXPECT_FALSE((*log)->first_error().empty());
}

// --- trace queries ---

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs_.MkDir("/data").ok());
    auto log = EventLog::Open(fs_, kDir, TestOptions());
    ASSERT_TRUE(log.ok());
    log_ = std::move(*log);
  }
  void Put(int64_t t, const std::string& kind, const std::string& id,
           std::vector<std::pair<std::string, std::string>> fields) {
    Event e(kind, id);
    e.time_ms = t;
    e.fields = std::move(fields);
    log_->Append(std::move(e));
  }
  std::vector<std::string> Ids(const TraceQuery& q) {
    std::vector<std::string> warnings;
    auto r = RunTrace(fs_, kDir, q, &warnings);
    EXPECT_TRUE(r.ok());
    std::vector<std::string> ids;
    if (r.ok()) {
      for (const auto& t : *r) ids.push_back(t.id);
    }
    return ids;
  }
  SimFs fs_;
  std::unique_ptr<EventLog> log_;
};

TEST_F(TraceTest, FindsByIdMessageIdSenderRecipientAndWindow) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  Put(now - 5000, "received", "A", {{"from", "Bob@Example.org"}, {"to", "alice@localhost,carol@localhost"},
                                    {"message_id", "<m1@example.org>"}});
  Put(now - 4000, "received", "B", {{"from", ""}, {"to", "alice@localhost"}, {"message_id", "<m2@x>"}});
  Put(now - 3000, "delivered", "A", {{"user", "alice"}, {"uid", "1"}});
  Put(now - 2000, "delivered", "B", {{"user", "dave"}, {"uid", "9"}});
  Put(now - 1000, "retrieved", "A", {{"user", "alice"}, {"client", "127.0.0.1:4000"}});
  Put(now - 900, "deleted", "A", {{"user", "alice"}, {"by", "pop3"}});

  TraceQuery q;
  q.id = "a";
  auto ids = Ids(q);
  ASSERT_EQ(ids, std::vector<std::string>{"A"});
  std::vector<std::string> warnings;
  auto full = RunTrace(fs_, kDir, q, &warnings);
  ASSERT_TRUE(full.ok());
  ASSERT_EQ((*full)[0].events.size(), 4u);  // received, delivered, retrieved, deleted
  EXPECT_EQ((*full)[0].events.back().kind, "deleted");

  q = {};
  q.message_id = "m1@example.org";  // without <>
  EXPECT_EQ(Ids(q), std::vector<std::string>{"A"});
  q = {};
  q.from = "<bob@example.org>";
  EXPECT_EQ(Ids(q), std::vector<std::string>{"A"});
  q = {};
  q.from = "<>";
  EXPECT_EQ(Ids(q), std::vector<std::string>{"B"});
  q = {};
  q.to = "ALICE@localhost";
  EXPECT_EQ(Ids(q), (std::vector<std::string>{"A", "B"}));
  q = {};
  q.to = "carol@localhost";
  EXPECT_EQ(Ids(q), std::vector<std::string>{"A"});
  q = {};
  q.to = "dave";  // by the user a delivery went to
  EXPECT_EQ(Ids(q), std::vector<std::string>{"B"});
  q = {};
  q.to = "alice@localhost";
  q.from = "bob@example.org";  // both must match
  EXPECT_EQ(Ids(q), std::vector<std::string>{"A"});
  q.since_ms = now - 4500;  // A arrived before the window
  EXPECT_TRUE(Ids(q).empty());
  q = {};
  q.to = "alice@localhost";
  q.since_ms = now - 4500;
  q.until_ms = now;
  EXPECT_EQ(Ids(q), std::vector<std::string>{"B"});
  q = {};
  q.to = "nobody@localhost";
  EXPECT_TRUE(Ids(q).empty());
  // An address: the sender or a recipient (or the user a delivery went to).
  q = {};
  q.address = "<bob@example.org>";
  EXPECT_EQ(Ids(q), std::vector<std::string>{"A"});
  q.address = "alice@localhost";
  EXPECT_EQ(Ids(q), (std::vector<std::string>{"A", "B"}));
  q.address = "dave";
  EXPECT_EQ(Ids(q), std::vector<std::string>{"B"});
  q.address = "carol@localhost";
  q.from = "<>";  // and the other criteria still apply
  EXPECT_TRUE(Ids(q).empty());

  std::string text = FormatTraceText(*full);
  EXPECT_NE(text.find("message A  message-id <m1@example.org>  from <Bob@Example.org>"), std::string::npos) << text;
  EXPECT_NE(text.find("retrieved"), std::string::npos);
  EXPECT_NE(text.find("client=127.0.0.1:4000"), std::string::npos);
  std::string json = FormatTraceJson(*full);
  EXPECT_EQ(json.find("{\"events\":[{\"client\""), std::string::npos);  // fields sit in each event object
  EXPECT_NE(json.find("\"event\":\"deleted\""), std::string::npos) << json;
  EXPECT_EQ(std::count(json.begin(), json.end(), '\n'), 1);
}

TEST(TraceTime, ParsesDatesAndAges) {
  const int64_t now = kT0 + 12 * 3600000;
  EXPECT_EQ(ParseTraceTime("2025-12-06", now), kT0);
  EXPECT_EQ(ParseTraceTime("2025-12-06T01:02:03Z", now), kT0 + 3723000);
  EXPECT_EQ(ParseTraceTime("2025-12-06T01:02", now), kT0 + 3720000);
  EXPECT_EQ(ParseTraceTime("90s", now), now - 90000);
  EXPECT_EQ(ParseTraceTime("30m", now), now - 1800000);
  EXPECT_EQ(ParseTraceTime("12h", now), kT0);
  EXPECT_EQ(ParseTraceTime("7d", now), now - 7 * kDay);
  for (const char* bad : {"", "d", "-5m", "yesterday", "2025-13-01", "2025-12-06T25:00", "2025-12-06x", "12w"}) {
    EXPECT_FALSE(ParseTraceTime(bad, now).has_value()) << bad;
  }
}

TEST(HeaderValue, FindsUnfoldsAndStopsAtTheBody) {
  EXPECT_EQ(HeaderValue("Subject: hi\r\nMessage-ID:  <a@b>\r\n\r\nMessage-ID: <body@x>\r\n", "message-id"), "<a@b>");
  EXPECT_EQ(HeaderValue("Message-Id:\n <folded@x>\nX: y\n\n", "Message-ID"), "<folded@x>");
  EXPECT_EQ(HeaderValue("Subject: hi\n\nMessage-ID: <body@x>\n", "Message-ID"), "");
  EXPECT_EQ(HeaderValue("", "Message-ID"), "");
  EXPECT_EQ(HeaderValue("Message-IDx: <no@x>\n", "Message-ID"), "");
}

}  // namespace
}  // namespace holdfast
