// systemd integration without libsystemd (two small, documented protocols):
//
// sd_notify(3): one datagram to $NOTIFY_SOCKET, so a `Type=notify` unit
// knows when holdfast is ready (recovery done, listeners open), reloading or
// stopping. Without NOTIFY_SOCKET it does nothing; a failure to send is not
// an error (the protocol is advisory).
//
// sd_listen_fds(3): socket activation. systemd (or systemd-socket-activate)
// opens the listening sockets and passes them as descriptors 3.. with
// $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES (FileDescriptorName=).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace holdfast {

// `state` is newline-separated KEY=VALUE lines, e.g. "READY=1\nSTATUS=...".
void NotifyServiceManager(std::string_view state);

// The listening sockets passed to this process, by name ("lmtp", "pop3",
// "pop3s", "metrics"); empty when none were (no LISTEN_PID, or it names
// another process). Takes them: marks each close-on-exec and unsets the
// variables so filter workers do not inherit them. kInvalid for an unnamed
// socket or a name holdfast does not know: an operator must say which
// listener each one is.
Result<std::map<std::string, std::vector<int>>> TakeListenSockets();

}  // namespace holdfast
