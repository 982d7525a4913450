// Event log files (DATA/events/*.events) are read back by `holdfast trace`,
// damaged or not: any bytes must give events or warnings, never a crash;
// every event that decodes must encode back to the same event, and both
// output forms must render it. Format: docs/events.md.
//
// Each input is tried raw (as a whole file, through ReadEvents on a SimFs)
// and, so that mutations reach the event decoder, as one payload framed
// with valid checksums.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "events/event_log.h"
#include "events/trace.h"
#include "fs/sim_fs.h"
#include "util/record_log.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckFile(const std::string& bytes) {
  holdfast::SimFs fs;
  Check(fs.MkDir("/e").ok());
  auto f = fs.CreateExclusive("/e/20261206-000000-1-0.events");
  Check(f.ok());
  Check((*f)->Append(bytes).ok());
  std::vector<std::string> warnings;
  auto events = holdfast::ReadEvents(fs, "/e", holdfast::EventFilter{}, &warnings);
  Check(events.ok());
  std::vector<holdfast::MessageTrace> traces;
  for (auto& e : *events) {
    holdfast::Event back;
    Check(holdfast::DecodeEvent(holdfast::EncodeEvent(e), &back));
    Check(back.time_ms == e.time_ms && back.kind == e.kind && back.id == e.id && back.fields == e.fields);
    traces.push_back(holdfast::MessageTrace{e.id, {e}});
  }
  (void)holdfast::FormatTraceText(traces);
  (void)holdfast::FormatTraceJson(traces);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  CheckFile(in);
  CheckFile(holdfast::EncodeRecord(holdfast::EventLog::kRecordType, in));
  return 0;
}
