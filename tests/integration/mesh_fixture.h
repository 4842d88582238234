// File: tests/integration/mesh_fixture.h
// A test fixture that runs a real mesh on loopback: loom-coordinator and loom-worker processes
// on port 0 with --ready_file, a fresh ledger in a temp dir, and helpers that drive the loom
// and loom-ledger CLIs. Logs of every process are printed when a test fails.
#ifndef LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_
#define LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_

#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom::testing {

using json = nlohmann::json;

// Short heartbeats so expiry and re-registration happen within a test's time.
inline constexpr char kHeartbeatMs[] = "--heartbeat_interval_ms=100";

class MeshFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    db_ = dir_ + "/loom.db";
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_.process) std::cerr << "coordinator log:\n" << coordinator_.process->Log();
      for (auto& [name, w] : workers_) {
        if (w.process) std::cerr << name << " log:\n" << w.process->Log();
      }
    }
    workers_.clear();
    coordinator_ = {};
  }

  void StartCoordinator(const std::string& listen = "127.0.0.1:0",
                        std::vector<std::string> extra = {}) {
    std::string error;
    std::vector<std::string> args = {"--grpc_listen=" + listen, "--ledger_db=" + db_, kHeartbeatMs,
                                     "--missed_heartbeats=3", "--attempt_timeout_ms=10000",
                                     "--http_listen=127.0.0.1:0", "--allow_anonymous=anonymous"};
    args.insert(args.end(), extra.begin(), extra.end());
    coordinator_ = StartDaemon("loom-coordinator", dir_, "coordinator", args, &error);
    ASSERT_TRUE(coordinator_.process) << error;
    // Requests are charged to client:anonymous; give it credits (idempotent across restarts).
    CommandResult grant = RunCommand(
        "loom-ledger", {"--db=" + db_, "grant", "client:anonymous", "1000", "--reference=test-setup"});
    ASSERT_EQ(grant.exit_code, 0) << grant.err;
  }

  void StartWorker(const std::string& device, const std::string& model,
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address,
                                     "--device_id=" + device, "--provider_id=prov-" + device,
                                     "--model=" + model, "--sim_output_tokens=24"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string error;
    workers_[device] = StartDaemon("loom-worker", dir_, device, args, &error);
    ASSERT_TRUE(workers_[device].process) << error;
  }

  // Every device the coordinator lists, in any state.
  std::set<std::string> Devices() {
    CommandResult r = RunCommand("loom", {"--coordinator=" + coordinator_.address, "devices", "--json"});
    std::set<std::string> ids;
    if (r.exit_code != 0) return ids;
    json devices = json::parse(r.out, nullptr, false);
    if (devices.is_discarded()) return ids;
    for (const auto& d : devices.value("devices", json::array())) {
      ids.insert(d["deviceId"].get<std::string>());
    }
    return ids;
  }

  bool WaitForDevices(const std::set<std::string>& expected) {
    return WaitFor([&] { return Devices() == expected; }, absl::Seconds(20));
  }

  json AskJson(const std::string& prompt, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address, "ask", prompt,
                                     "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = RunCommand("loom", args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json parsed = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.out;
    return parsed;
  }

  json LedgerRecords(const std::string& request_id) {
    CommandResult r = RunCommand("loom-ledger", {"--db=" + db_, "records", "--request=" + request_id,
                                          "--format=json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  std::string dir_;
  std::string db_;
  Daemon coordinator_;
  std::map<std::string, Daemon> workers_;
};

}  // namespace loom::testing

#endif  // LOOM_TESTS_INTEGRATION_MESH_FIXTURE_H_
