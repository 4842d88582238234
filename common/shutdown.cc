#include "common/shutdown.h"

#include <csignal>

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace loom {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR2);  // internal wake-up for RequestStop
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

ShutdownWaiter::ShutdownWaiter() {
  signal_thread_ = std::thread([this] {
    sigset_t set = ShutdownSignals();
    int sig = 0;
    sigwait(&set, &sig);
    absl::MutexLock lock(&mu_);
    if (!stopped_ && sig != SIGUSR2) {
      spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    stopped_ = true;
  });
}

ShutdownWaiter::~ShutdownWaiter() {
  RequestStop(0);
  signal_thread_.join();
}

int ShutdownWaiter::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&stopped_));
  return exit_code_;
}

void ShutdownWaiter::RequestStop(int exit_code) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    exit_code_ = exit_code;
  }
  pthread_kill(signal_thread_.native_handle(), SIGUSR2);
}

}  // namespace loom
