// File: tests/fakes/mesh_fixture.h
// A coordinator's view of a mesh for unit tests: a registry on a simulated clock, a scripted
// FakeDeviceClient, the default selector and an AttemptRunner over them.
#ifndef LOOM_TESTS_FAKES_MESH_FIXTURE_H_
#define LOOM_TESTS_FAKES_MESH_FIXTURE_H_

#include <string>
#include <vector>

#include "common/protocol.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_device_client.h"

namespace loom {

class MeshFixture : public ::testing::Test {
 protected:
  // Every stage runs on the fixture's simulated clock: the fake devices move it (`takes`,
  // `hang`), and deadlines are on it.
  MeshFixture() { devices_.set_clock(&clock_); }

  // Registers device `id` (address "<id>:1") serving `model` of `family`; it answers " hello
  // world" until Set() says otherwise.
  void AddDevice(const std::string& id, const std::string& model, const std::string& family,
                 int active = 0, double parameters_b = 8, bool simulated = true,
                 const std::vector<std::string>& capabilities = {}) {
    v1::RegisterRequest r;
    r.mutable_protocol_version()->set_major(kProtocolMajor);
    r.set_device_id(id);
    r.set_provider_id("prov-" + id);
    r.set_address(id + ":1");
    auto* m = r.add_models();
    m->set_name(model);
    m->set_family(family);
    m->set_parameters_b(parameters_b);
    for (const std::string& c : capabilities) m->add_capabilities(c);
    r.mutable_load()->set_active(active);
    r.mutable_load()->set_max_concurrency(4);
    r.set_simulated(simulated);
    ASSERT_TRUE(registry_.Register(r).ok());
    devices_.Set(id + ":1", {});
  }

  static v1::ChatMessage User(const std::string& text) {
    v1::ChatMessage m;
    m.set_role("user");
    m.set_content(text);
    return m;
  }

  // A sink that keeps every event (safe to call from several threads).
  EventSink Collect() {
    return [this](const v1::CompleteEvent& e) {
      absl::MutexLock lock(&events_mu_);
      events_.push_back(e);
    };
  }

  // The scope a stage under test runs in: request "req", the fixture's log, a sink that keeps
  // every event, and `cancel` (default: the fixture's).
  RequestScope Scope(absl::Duration timeout = absl::Seconds(30), Cancellation* cancel = nullptr) {
    return {"req", clock_.Now() + timeout, cancel ? cancel : &cancel_, Collect(), &log_, &clock_};
  }

  SimulatedClock clock_;
  DeviceRegistry registry_{{}, &clock_};
  FakeDeviceClient devices_;
  ModelSelector selector_;
  AttemptRunner attempts_{{.max_attempts = 3, .attempt_timeout = absl::Seconds(30)},
                          &registry_, &selector_, &devices_, &clock_};
  AttemptLog log_{&clock_};
  Cancellation cancel_;
  absl::Mutex events_mu_;
  std::vector<v1::CompleteEvent> events_;  // read after the stage under test returned
};

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_MESH_FIXTURE_H_
