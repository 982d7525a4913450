// NameThread: the name `top -H`, `ps -L` and /proc/PID/task/*/comm show, so
// an operator can tell holdfast's threads apart (at most 15 bytes). Set by
// the creator, so the name is there before the thread first runs.
#pragma once

#include <pthread.h>

#include <thread>

namespace holdfast {

inline std::thread NameThread(std::thread t, const char* name) {
  (void)pthread_setname_np(t.native_handle(), name);
  return t;
}

}  // namespace holdfast
