// File: tests/tsan/shim_check.cc
// Checks tests/tsan/absl_sync_annotations.cc in the TSan build, both ways:
//   shim_check            every shared access is ordered by absl::Mutex, Await or Notification:
//                         TSan must stay silent (the shim makes the locks visible);
//   shim_check --race     one counter is also written without the lock: TSan must report it
//                         (the shim does not hide real races).
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "--race") == 0;
  absl::Mutex mu;
  int guarded = 0;
  int unguarded = 0;
  std::thread other([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++guarded;
    }
    if (race) ++unguarded;
  });
  for (int i = 0; i < 1000; ++i) {
    absl::MutexLock lock(&mu);
    ++guarded;
  }
  if (race) ++unguarded;
  other.join();

  absl::Notification ready;
  int published = 0;
  std::thread publisher([&] {
    published = 42;
    ready.Notify();
  });
  ready.WaitForNotification();
  const int seen = published;
  publisher.join();

  int flag = 0;
  std::thread setter([&] {
    absl::MutexLock lock(&mu);
    flag = 1;
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* f) { return *f == 1; }, &flag));
  }
  setter.join();
  std::printf("guarded %d, unguarded %d, published %d\n", guarded, unguarded, seen);
  return guarded == 2000 && seen == 42 ? 0 : 1;
}
