// File: tests/tsan/absl_sync_annotations.cc
// Linked only into ThreadSanitizer builds (tests/sanitize.sh tsan, LOOM_TSAN_ABSL_SHIM).
//
// Debian's Abseil is built without TSan, so TSan cannot see absl::Mutex: its lock word and
// futex waits are invisible, and every access guarded by one looks like a data race. This file
// makes the locks visible without rebuilding Abseil. It defines the library's exported Mutex,
// CondVar, Notification and BlockingCounter entry points in the executable; the dynamic linker binds every call to them to
// these definitions, including the library's own calls (absl::Notification calls Mutex::Lock
// through its PLT). Each forwards to the real function (dlsym RTLD_NEXT) and tells TSan about
// the happens-before edge: a release on the mutex before it is given up, an acquire after it is
// taken.
//
// Abseil evaluates a waiter's Condition on whichever thread holds or releases the mutex, inside
// these calls. The Condition's reads are protected by the real mutex, but TSan would order them
// wrongly, so reads inside the real calls are ignored (conditions only read).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
}

namespace {

#define LOOM_STRINGIFY_INNER(x) #x
#define LOOM_STRINGIFY(x) LOOM_STRINGIFY_INNER(x)

// The real function with Itanium mangled name "_ZN4absl<len><inline namespace><rest>" (_ZNK for
// a const member).
void* RealFunction(const char* rest, bool is_const = false) {
  const std::string ns = LOOM_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(is_const ? "_ZNK4absl" : "_ZN4absl") +
                           std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "tsan shim: %s not found in Abseil\n", name.c_str());
    std::abort();
  }
  return fn;
}

// Runs the real call with TSan ignoring reads (Conditions evaluated inside it).
template <typename F>
auto Quietly(F&& call) {
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  struct End {
    ~End() { AnnotateIgnoreReadsEnd(__FILE__, __LINE__); }
  } end;
  return call();
}

// A call that returns holding `mu`.
template <typename F>
auto Taking(void* mu, F&& call) {
  struct Acquire {
    void* mu;
    ~Acquire() { __tsan_acquire(mu); }
  } acquire{mu};
  return Quietly(call);
}

// A call that gives `mu` up while it waits and returns holding it again.
template <typename F>
auto WaitingOn(void* mu, F&& call) {
  __tsan_release(mu);
  return Taking(mu, call);
}

}  // namespace

// REAL(type, rest) is the real function, resolved once, as a plain function taking `this` first;
// REAL_CONST for a const member.
#define REAL_OF(type, rest, is_const)                                           \
  ([]() {                                                                       \
    static const auto fn = reinterpret_cast<type>(RealFunction(rest, is_const)); \
    return fn;                                                                  \
  }())
#define REAL(type, rest) REAL_OF(type, rest, false)
#define REAL_CONST(type, rest) REAL_OF(type, rest, true)

namespace absl {
ABSL_NAMESPACE_BEGIN

using Self = Mutex*;
using Cond = const Condition&;

void Mutex::Lock() {
  Taking(this, [&] { REAL(void (*)(Self), "5Mutex4LockEv")(this); });
}

void Mutex::ReaderLock() {
  Taking(this, [&] { REAL(void (*)(Self), "5Mutex10ReaderLockEv")(this); });
}

bool Mutex::TryLock() {
  const bool locked = REAL(bool (*)(Self), "5Mutex7TryLockEv")(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  const bool locked = REAL(bool (*)(Self), "5Mutex13ReaderTryLockEv")(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  __tsan_release(this);
  Quietly([&] { REAL(void (*)(Self), "5Mutex6UnlockEv")(this); });
}

void Mutex::ReaderUnlock() {
  __tsan_release(this);
  Quietly([&] { REAL(void (*)(Self), "5Mutex12ReaderUnlockEv")(this); });
}

void Mutex::LockWhen(Cond c) {
  Taking(this, [&] { REAL(void (*)(Self, Cond), "5Mutex8LockWhenERKNS0_9ConditionE")(this, c); });
}

void Mutex::ReaderLockWhen(Cond c) {
  Taking(this, [&] {
    REAL(void (*)(Self, Cond), "5Mutex14ReaderLockWhenERKNS0_9ConditionE")(this, c);
  });
}

bool Mutex::LockWhenWithTimeout(Cond c, Duration d) {
  return Taking(this, [&] {
    return REAL(bool (*)(Self, Cond, Duration),
                "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE")(this, c, d);
  });
}

bool Mutex::ReaderLockWhenWithTimeout(Cond c, Duration d) {
  return Taking(this, [&] {
    return REAL(bool (*)(Self, Cond, Duration),
                "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE")(this, c, d);
  });
}

bool Mutex::LockWhenWithDeadline(Cond c, Time t) {
  return Taking(this, [&] {
    return REAL(bool (*)(Self, Cond, Time),
                "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE")(this, c, t);
  });
}

bool Mutex::ReaderLockWhenWithDeadline(Cond c, Time t) {
  return Taking(this, [&] {
    return REAL(bool (*)(Self, Cond, Time),
                "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE")(this, c, t);
  });
}

void Mutex::Await(Cond c) {
  WaitingOn(this, [&] { REAL(void (*)(Self, Cond), "5Mutex5AwaitERKNS0_9ConditionE")(this, c); });
}

bool Mutex::AwaitWithTimeout(Cond c, Duration d) {
  return WaitingOn(this, [&] {
    return REAL(bool (*)(Self, Cond, Duration),
                "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE")(this, c, d);
  });
}

bool Mutex::AwaitWithDeadline(Cond c, Time t) {
  return WaitingOn(this, [&] {
    return REAL(bool (*)(Self, Cond, Time),
                "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE")(this, c, t);
  });
}

void CondVar::Wait(Mutex* mu) {
  WaitingOn(mu, [&] { REAL(void (*)(CondVar*, Mutex*), "7CondVar4WaitEPNS0_5MutexE")(this, mu); });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration d) {
  return WaitingOn(mu, [&] {
    return REAL(bool (*)(CondVar*, Mutex*, Duration),
                "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE")(this, mu, d);
  });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time t) {
  return WaitingOn(mu, [&] {
    return REAL(bool (*)(CondVar*, Mutex*, Time),
                "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE")(this, mu, t);
  });
}

// Notification: its fast path reads an atomic flag the library set without TSan seeing it, so
// Notify releases and every wait acquires on the notification itself.
void Notification::Notify() {
  __tsan_release(this);
  REAL(void (*)(Notification*), "12Notification6NotifyEv")(this);
}

void Notification::WaitForNotification() const {
  Taking(const_cast<Notification*>(this), [&] {
    REAL_CONST(void (*)(const Notification*), "12Notification19WaitForNotificationEv")(this);
  });
}

bool Notification::WaitForNotificationWithTimeout(Duration d) const {
  return Taking(const_cast<Notification*>(this), [&] {
    return REAL_CONST(bool (*)(const Notification*, Duration),
                      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE")(this, d);
  });
}

bool Notification::WaitForNotificationWithDeadline(Time t) const {
  return Taking(const_cast<Notification*>(this), [&] {
    return REAL_CONST(bool (*)(const Notification*, Time),
                      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE")(this, t);
  });
}

// BlockingCounter: every DecrementCount but the last only touches an atomic inside the
// library, so each releases on the counter and Wait acquires on it.
bool BlockingCounter::DecrementCount() {
  __tsan_release(this);
  return REAL(bool (*)(BlockingCounter*), "15BlockingCounter14DecrementCountEv")(this);
}

void BlockingCounter::Wait() {
  Taking(this, [&] { REAL(void (*)(BlockingCounter*), "15BlockingCounter4WaitEv")(this); });
}

ABSL_NAMESPACE_END
}  // namespace absl
