// File: tests/fakes/fake_device_client.h
// A scripted DeviceClient: per device address, the text it streams and the status it ends
// with. Records every call. Thread-safe.
#ifndef LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_
#define LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/tokens.h"
#include "coordinator/device_client.h"

namespace loom {

class FakeDeviceClient : public DeviceClient {
 public:
  struct Script {
    std::vector<std::string> chunks = {" hello", " world"};
    absl::Status status;         // returned after the chunks
    bool wait_for_cancel = false;  // block until cancelled, then CANCELLED
  };

  void Set(const std::string& address, Script script) {
    absl::MutexLock lock(&mu_);
    scripts_[address] = std::move(script);
  }

  std::vector<DeviceCall> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  absl::StatusOr<v1::Usage> Infer(const DeviceCall& call, const ChunkSink& sink,
                                  Cancellation* cancel) override {
    Script script;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(call);
      auto it = scripts_.find(call.address);
      if (it == scripts_.end()) return absl::UnavailableError("no such device: " + call.address);
      script = it->second;
    }
    int64_t tokens = 0;
    for (const auto& c : script.chunks) {
      sink(c);
      tokens += CountTokens(c);
    }
    if (script.wait_for_cancel) {
      cancel->WaitFor(absl::InfiniteDuration());
      return absl::CancelledError("cancelled");
    }
    if (!script.status.ok()) return script.status;
    v1::Usage usage;
    usage.set_completion_tokens(tokens);
    return usage;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<DeviceCall> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_FAKE_DEVICE_CLIENT_H_
