// Log lines as JSON (log.format = "json"): every key=value field, the
// MessageId, the rest as msg; quoting and control bytes survive.
#include "server/logger.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "core/message_id.h"

namespace holdfast {
namespace {

TEST(LoggerJson, FieldsIdAndMessage) {
  const std::string id = MessageId::Generate().ToString();
  EXPECT_EQ(FormatJson("2026-11-23T18:00:00.000Z", "info", "event=spool delivered " + id + " to alice uid=5"),
            "{\"time\":\"2026-11-23T18:00:00.000Z\",\"level\":\"info\",\"event\":\"spool\",\"id\":\"" + id +
                "\",\"uid\":\"5\",\"msg\":\"delivered to alice\"}");
}

TEST(LoggerJson, QuotedValuesAndControlBytes) {
  std::string line = "event=login client=" + Kv("10.0.0.1:5") + " user=" + Kv("a \"b\" c") + " reason=" +
                     Kv(std::string("x\001y=z"));
  EXPECT_EQ(FormatJson("t", "warn", line),
            "{\"time\":\"t\",\"level\":\"warn\",\"event\":\"login\",\"client\":\"10.0.0.1:5\",\"user\":\"a \\\"b\\\" c\","
            "\"reason\":\"x?y=z\"}");
  // A field may not override time or level; a repeated key keeps the first.
  EXPECT_EQ(FormatJson("t", "info", "level=x time=y event=a event=b"),
            "{\"time\":\"t\",\"level\":\"info\",\"event\":\"a\"}");
  // Raw control bytes (not from Kv) are escaped, never break the line.
  EXPECT_EQ(FormatJson("t", "info", std::string("event=e msg\x01\"")), "{\"time\":\"t\",\"level\":\"info\",\"event\":\"e\",\"msg\":\"msg\\u0001\"}");
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Several events in one call: each its own line, all flushed before the
// call returns (a reply may follow right after), and levels still apply.
TEST(LoggerLines, EachEventAWholeLineFlushedAtOnce) {
  char dir[] = "/tmp/hf-logger-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/log";
  {
    Logger log(Logger::kInfo, path);
    log.Lines(Logger::kInfo, {"event=accepted id=1", "event=accepted id=2"});
    log.Lines(Logger::kDebug, {"event=hidden"});
    log.Warn("event=single");
    const std::string text = ReadAll(path);  // the Logger is still open: no close flushed it
    std::istringstream lines(text);
    std::string l1, l2, l3, rest;
    ASSERT_TRUE(std::getline(lines, l1) && std::getline(lines, l2) && std::getline(lines, l3)) << text;
    EXPECT_FALSE(std::getline(lines, rest)) << text;
    EXPECT_NE(l1.find(" info event=accepted id=1"), std::string::npos) << l1;
    EXPECT_NE(l2.find(" info event=accepted id=2"), std::string::npos) << l2;
    EXPECT_NE(l3.find(" warn event=single"), std::string::npos) << l3;
    EXPECT_EQ(l1.substr(0, l1.find(' ')), l2.substr(0, l2.find(' ')));  // one timestamp for the call
    log.set_json(true);
    log.Lines(Logger::kInfo, {"event=a", "event=b"});
    const std::string more = ReadAll(path).substr(text.size());
    EXPECT_NE(more.find("\"event\":\"a\"}\n{"), std::string::npos) << more;
    EXPECT_EQ(more.back(), '\n');
  }
  std::remove(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace holdfast
