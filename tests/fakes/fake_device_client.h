// File: tests/fakes/fake_device_client.h
// A scripted DeviceClient: per device address, the text it streams and the status it ends
// with. Records every call. Thread-safe.
#ifndef LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_
#define LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/tokens.h"
#include "absl/synchronization/notification.h"
#include "coordinator/mesh/device_client.h"

namespace loom {

class FakeDeviceClient : public DeviceClient {
 public:
  struct Script {
    std::vector<std::string> chunks = {" hello", " world"};
    absl::Status status;         // returned after the chunks
    std::string finish_reason;   // in the final chunk ("" as from an older worker)
    bool wait_for_cancel = false;  // block until cancelled, then CANCELLED
    bool hang = false;           // block until the call's deadline (or cancel): DEADLINE_EXCEEDED.
                                 // With a clock (set_clock), time jumps to the deadline instead
    absl::Duration takes;        // advance the clock (set_clock) by this much, as device time
    int64_t claimed_tokens = -1;  // the usage it reports (-1: the tokens it actually sent)
    bool finish_after_cancel = false;  // block until cancelled, then answer OK anyway
    int rendezvous = 0;          // block until this many calls have arrived (at most 10 s;
                                 // UNAVAILABLE if never reached). A call that waits here is
                                 // still running when the others arrive: proves concurrency
    absl::Notification* gate = nullptr;  // block until notified (at most 10 s: UNAVAILABLE)
  };

  // With a clock, a script's `takes` moves it forward during the call, and `hang` moves it to
  // the call's deadline.
  void set_clock(SimulatedClock* clock) { clock_ = clock; }

  void Set(const std::string& address, Script script) {
    absl::MutexLock lock(&mu_);
    scripts_[address] = std::move(script);
  }

  std::vector<DeviceCall> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  int max_in_flight() {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }

  // The user message of the call for `sub_task_id` (the last one, if retried).
  std::string InputOf(const std::string& sub_task_id) {
    absl::MutexLock lock(&mu_);
    std::string input;
    for (const auto& c : calls_) {
      if (c.request.sub_task_id() == sub_task_id) input = c.request.messages().rbegin()->content();
    }
    return input;
  }

  absl::StatusOr<v1::InferChunk> Infer(const DeviceCall& call, const ChunkSink& sink,
                                  Cancellation* cancel) override {
    Script script;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      auto it = scripts_.find(call.address);
      if (it == scripts_.end()) return absl::UnavailableError("no such device: " + call.address);
      script = it->second;
    }
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
      ++arrived_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
    }
    struct Leave {
      FakeDeviceClient* self;
      ~Leave() {
        absl::MutexLock lock(&self->mu_);
        --self->in_flight_;
      }
    } leave{this};
    if (script.rendezvous > 0) {
      absl::MutexLock lock(&mu_);
      auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return arrived_ >= script.rendezvous;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10))) {
        return absl::UnavailableError("rendezvous not reached: calls did not overlap");
      }
    }
    if (script.gate && !script.gate->WaitForNotificationWithTimeout(absl::Seconds(10))) {
      return absl::UnavailableError("the test never opened the gate");
    }
    if (clock_ && script.takes > absl::ZeroDuration()) clock_->Advance(script.takes);
    int64_t tokens = 0;
    for (const auto& c : script.chunks) {
      sink(c);
      tokens += CountTokens(c);
    }
    if (script.finish_after_cancel) cancel->WaitFor(absl::InfiniteDuration());
    if (script.wait_for_cancel) {
      cancel->WaitFor(absl::InfiniteDuration());
      return absl::CancelledError("cancelled");
    }
    if (script.hang && clock_ != nullptr) {
      // On a simulated clock the device takes until the call's deadline: time jumps to it.
      if (cancel && cancel->IsCancelled()) return absl::CancelledError("cancelled");
      if (clock_->Now() < call.deadline) clock_->Set(call.deadline);
      return absl::DeadlineExceededError("fake device hung past the deadline");
    }
    if (script.hang) {
      if (cancel && cancel->WaitFor(call.deadline - absl::Now())) {
        return absl::CancelledError("cancelled");
      }
      return absl::DeadlineExceededError("fake device hung past the deadline");
    }
    if (!script.status.ok()) return script.status;
    v1::InferChunk last;
    last.set_final(true);
    last.mutable_usage()->set_completion_tokens(script.claimed_tokens >= 0 ? script.claimed_tokens
                                                                           : tokens);
    last.set_finish_reason(script.finish_reason);
    return last;
  }

 private:
  SimulatedClock* clock_ = nullptr;
  absl::Mutex mu_;
  std::map<std::string, Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<DeviceCall> calls_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_
