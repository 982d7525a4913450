// Log lines as JSON (log.format = "json"): every key=value field, the
// MessageId, the rest as msg; quoting and control bytes survive.
#include "server/logger.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace holdfast
