// holdfast filter-worker: hidden; the daemon's filter supervisor execs it per
// batch (`/proc/self/exe --data D [--config C] filter-worker`) with the batch
// on stdin and reads the verdicts from stdout (docs/filters.md, "Worker
// protocol"). It runs the chain of the configuration it loads itself.
#include <signal.h>
#include <unistd.h>

#include <memory>

#include "cli/commands.h"
#include "filter/worker.h"

namespace holdfast::cli {

void AddFilterWorkerCommand(CLI::App& app, Runner* run) {
  CLI::App* sub = app.add_subcommand("filter-worker", "Run the filter chain on a batch (internal; used by serve)");
  sub->group("");  // not in --help: nothing for an operator to run by hand
  auto retry = std::make_shared<bool>(false);
  sub->add_flag("--retry", *retry, "a retry slot's worker: step timeouts do not count time spent waiting for a CPU");
  sub->callback([run, retry] {
    *run = [retry](Context& c) {
      // A daemon that went away must not kill us mid-write; the write fails instead.
      ::signal(SIGPIPE, SIG_IGN);
      FilterOptions opts = c.config().filters;
      opts.hostname = c.config().hostname;
      opts.retry = *retry;
      return RunFilterWorker(opts, STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO);
    };
  });
}

}  // namespace holdfast::cli
