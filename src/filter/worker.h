// The filter worker: the process (`holdfast filter-worker`) that runs the
// chain of FilterOptions on a batch. The daemon forks it per batch and trusts
// none of what it does: it may crash, hang or babble, and only the verdicts
// it got out before that count. docs/filters.md is the manual.
#pragma once

#include "filter/filter.h"

namespace holdfast {

// Reads a whole batch (kInput frames, filter/protocol.h) from `in_fd` until
// EOF, runs the chain on each message in order and writes its kVerdict frame
// to `out_fd` as soon as it is decided. Diagnostics go to `err_fd`.
// Returns 0 when every verdict was written; EX_DATAERR when the input does
// not decode (nothing is run then); EX_IOERR when reading or writing failed.
int RunFilterWorker(const FilterOptions& opts, int in_fd, int out_fd, int err_fd);

// The chain on one message: each step sees the message as the steps before
// it left it; the first step that does not deliver decides. Header additions
// and rewrites accumulate; the folder chosen by a later step wins.
Verdict RunFilterChain(const FilterOptions& opts, const FilterInput& in);

}  // namespace holdfast
