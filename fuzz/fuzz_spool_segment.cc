// Spool segments are read back after crashes and disk damage (SpoolLog::Open
// at every start, `holdfast queue` through Inspect): any bytes must parse
// into messages and Done records or a clear error, never a crash.
//
// What parses must also make sense, and survive a round trip: the messages
// and Done records are written again through SpoolLog (on SimFs), and the
// new segment must parse to the same ones. Format: docs/spool.md.
//
// Every input is tried twice: as the raw bytes of a segment file (the seeds
// in fuzz/corpus/fuzz_spool_segment are real segments), and as a list of
// records `type:u8 len:u16le payload[len]` that the harness frames with
// valid checksums behind a valid segment header -- so that mutations reach
// the record decoders instead of dying on a CRC.
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fs/sim_fs.h"
#include "spool/spool_log.h"
#include "util/record_log.h"

namespace {

using holdfast::SpoolMessage;

bool Same(const SpoolMessage& a, const SpoolMessage& b) {
  if (a.id != b.id || a.received_ms != b.received_ms || a.client != b.client || a.helo != b.helo ||
      a.mail_from != b.mail_from || a.body != b.body || a.rcpts.size() != b.rcpts.size() || a.released != b.released)
    return false;
  for (size_t i = 0; i < a.rcpts.size(); ++i) {
    if (a.rcpts[i].address != b.rcpts[i].address || a.rcpts[i].user != b.rcpts[i].user ||
        a.rcpts[i].detail != b.rcpts[i].detail)
      return false;
  }
  return true;
}

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckSegment(std::string_view bytes) {
  const size_t size = bytes.size();
  auto parsed = holdfast::ParseSegment(bytes);
  if (!parsed.ok()) {
    Check(parsed.status().kind() == holdfast::Status::Kind::kCorrupt);
    return;
  }
  const holdfast::SegmentContents& seg = *parsed;
  // Invariants of anything that parses.
  Check(seg.valid_end <= size);
  Check(seg.torn ? seg.valid_end < size : seg.valid_end == size);
  for (const auto& m : seg.messages) {
    Check(!m.rcpts.empty());
    Check(m.body.size() <= size);
    Check(m.client.size() <= 4096 && m.helo.size() <= 4096 && m.mail_from.size() <= 4096);
    for (const auto& r : m.rcpts) Check(r.address.size() <= 4096 && r.user.size() <= 4096 && r.detail.size() <= 4096);
  }
  for (const auto& d : seg.done) {
    Check(d.state != holdfast::RcptState::kPending && static_cast<uint8_t>(d.state) <= 4);
  }
  // The filter ledger: attempts name 1..4096 ids, outcomes one with 1..3.
  for (const auto& ev : seg.filter_events) {
    Check(!ev.ids.empty() && ev.ids.size() <= 4096 && ev.outcome <= 3 && ev.reason.size() <= 4096);
    Check(ev.outcome == 0 || ev.ids.size() == 1);
  }
  // `order` lists every record once.
  Check(seg.order.size() == seg.messages.size() + seg.done.size() + seg.filter_events.size());
  // The same input parsed twice gives the same result (no hidden state).
  auto again = holdfast::ParseSegment(bytes);
  Check(again.ok() && again->messages.size() == seg.messages.size() && again->done.size() == seg.done.size() &&
        again->valid_end == seg.valid_end && again->torn == seg.torn);

  // Round trip through the real writer.
  holdfast::SimFs fs;
  Check(fs.MkDir("/spool").ok());
  std::vector<SpoolMessage> written;
  std::vector<holdfast::SegmentContents::Done> marked;
  {
    auto log = holdfast::SpoolLog::Open(fs, "/spool/q", holdfast::SpoolLog::Options{}, nullptr);
    Check(log.ok());
    std::set<holdfast::MessageId> ids;
    for (const auto& m : seg.messages) {
      holdfast::Status s = (*log)->AppendMessage(m);
      // A repeated id is refused while the first copy is pending.
      Check(s.ok() == ids.insert(m.id).second);
      if (s.ok()) written.push_back(m);
    }
    std::set<std::pair<holdfast::MessageId, uint32_t>> done_once;
    for (const auto& d : seg.done) {
      holdfast::Status s = (*log)->AppendDone(d.id, d.rcpt, d.state);
      if (!s.ok()) continue;  // unknown id or recipient, or already retired
      if (done_once.insert({d.id, d.rcpt}).second) marked.push_back(d);
    }
    Check((*log)->Sync().ok());
  }
  auto file = fs.ReadFile("/spool/q/0000000000000001.seg");
  Check(file.ok());
  auto reread = holdfast::ParseSegment(*file);
  Check(reread.ok() && !reread->torn && reread->valid_end == file->size());
  Check(reread->messages.size() == written.size());
  for (size_t i = 0; i < written.size(); ++i) Check(Same(reread->messages[i], written[i]));
  // AppendDone writes nothing for a recipient already done, so the new
  // segment holds exactly one Done per (id, rcpt) marked, in order.
  Check(reread->done.size() == marked.size());
  for (size_t i = 0; i < reread->done.size(); ++i) {
    Check(reread->done[i].id == marked[i].id && reread->done[i].rcpt == marked[i].rcpt &&
          reread->done[i].state == marked[i].state);
  }
}

// The input as records, framed properly behind a valid segment header.
std::string Framed(std::string_view in) {
  holdfast::Encoder h;
  h.U32(holdfast::SpoolLog::kVersion).U64(1).U64(1700000000000);
  std::string out = holdfast::EncodeRecord(1, h.data());
  while (in.size() >= 3) {
    const uint8_t type = static_cast<uint8_t>(in[0]);
    size_t len = static_cast<uint8_t>(in[1]) | (static_cast<size_t>(static_cast<uint8_t>(in[2])) << 8);
    in.remove_prefix(3);
    len = std::min(len, in.size());
    out += holdfast::EncodeRecord(type == 0 ? 2 : type, in.substr(0, len));
    in.remove_prefix(len);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckSegment(bytes);
  CheckSegment(Framed(bytes));
  return 0;
}
