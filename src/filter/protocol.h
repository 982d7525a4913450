// The pipe protocol between the daemon and a filter worker (docs/filters.md,
// "Worker protocol"). The daemon writes one kInput frame per message of the
// batch to the worker's stdin and closes it; the worker writes one kVerdict
// frame per message, in batch order, to its stdout. Frames are the record
// framing of util/record_log.h. The daemon trusts none of it: anything that
// does not decode is the worker's failure.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "filter/filter.h"
#include "util/status.h"

namespace holdfast {

// Record types of the two streams (util/record_log.h frames).
inline constexpr uint8_t kFilterInputRecord = 'I';
inline constexpr uint8_t kVerdictRecord = 'V';
// Bounds the decoders enforce; the encoders cut reason and trail to fit.
inline constexpr size_t kMaxEnvelopeField = 4096;   // client, helo, sender, each recipient
inline constexpr uint32_t kMaxFilterRecipients = 100000;
inline constexpr size_t kMaxFolderName = 255;
inline constexpr size_t kMaxVerdictText = 4096;     // reason, trail

std::string EncodeFilterInput(const FilterInput& in);
std::string EncodeVerdict(uint32_t index, const Verdict& v);

// A whole stream of kInput frames (the worker's stdin). kCorrupt on any damage.
Result<std::vector<FilterInput>> DecodeFilterInputs(std::string_view bytes);

// The worker's stdout. Verdicts decoded before the first bad or missing
// frame are kept: a worker that dies half-way has still settled those.
struct VerdictStream {
  std::vector<Verdict> verdicts;  // verdicts[i] is for batch message i
  bool complete = false;          // exactly `expected` verdicts and nothing else
  std::string error;              // why not complete, one line
};
VerdictStream DecodeVerdicts(std::string_view bytes, size_t expected);

}  // namespace holdfast
