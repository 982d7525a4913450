// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, so a
// `Type=notify` systemd unit knows when holdfast is ready (recovery done,
// listeners open), reloading or stopping. Without NOTIFY_SOCKET it does
// nothing; a failure to send is not an error (the protocol is advisory).
#pragma once

#include <string_view>

namespace holdfast {

// `state` is newline-separated KEY=VALUE lines, e.g. "READY=1\nSTATUS=...".
void NotifyServiceManager(std::string_view state);

}  // namespace holdfast
