// The subcommands. Each registers its options on a CLI11 app and returns an
// exit code (sysexits.h) from run(). docs/cli.md is the manual.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "cli/context.h"

namespace holdfast::cli {

using Runner = std::function<int(Context&)>;

// Each adds its subcommand to `app` and sets `*run` when it is chosen.
void AddDeliverCommand(CLI::App& app, Runner* run);
void AddUserCommand(CLI::App& app, Runner* run);
void AddMailboxCommand(CLI::App& app, Runner* run);
void AddFsckCommand(CLI::App& app, Runner* run);
void AddServeCommand(CLI::App& app, Runner* run);
void AddQueueCommand(CLI::App& app, Runner* run);
void AddImportCommand(CLI::App& app, Runner* run);
void AddExportCommand(CLI::App& app, Runner* run);
void AddTraceCommand(CLI::App& app, Runner* run);
void AddFilterWorkerCommand(CLI::App& app, Runner* run);  // hidden: run by serve

}  // namespace holdfast::cli
