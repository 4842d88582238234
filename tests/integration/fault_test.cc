// Faults with real processes: a lying worker, a worker SIGKILLed or SIGSTOPped mid-stream, the
// coordinator SIGKILLed while settling under load, and devices coming and going under load.
// After each: requests completed elsewhere or failed with a clear error, only successful
// attempts were credited, and `loom-ledger verify` passes.
#include <signal.h>

#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;

class FaultTest : public MeshFixture {
 protected:
  void TearDown() override {
    // A stopped worker cannot act on SIGTERM: let it run again before the fixture stops it.
    for (auto& [name, w] : workers_) {
      if (w.process && w.process->running()) w.process->Signal(SIGCONT);
    }
    MeshFixture::TearDown();
  }

  json AllRecords() {
    CommandResult r = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json", "--limit=100000"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  void ExpectLedgerVerifies() {
    CommandResult verify = RunCommand("loom-ledger", {"--db=" + db_, "verify"});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  }

  // The device a request is running on right now, from the coordinator's in-flight counts.
  std::string BusyDevice() {
    CommandResult d = Loom({"--coordinator=" + coordinator_.address, "devices", "--json"});
    json devices = json::parse(d.out, nullptr, false);
    if (devices.is_discarded()) return "";
    for (const auto& dev : devices.value("devices", json::array())) {
      if (dev.value("coordinatorInflight", 0) > 0) return dev["deviceId"];
    }
    return "";
  }

  // One slow request on two interchangeable devices; `fault` is sent to whichever device runs
  // it, mid-stream. The request must complete on the other device, credited to it alone.
  void RequestSurvivesSignalToItsDevice(int fault) {
    StartCoordinator("127.0.0.1:0", {"--attempt_timeout_ms=3000"});
    // About 2 s of output each, so the fault lands mid-stream.
    StartWorker("dev-a", "llama-3.1-8b", {"--sim_tokens_per_second=20", "--sim_output_tokens=40"});
    StartWorker("dev-b", "llama-3.1-8b", {"--sim_tokens_per_second=20", "--sim_output_tokens=40"});
    ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
    std::vector<std::string> args = ClientSecurityArgs();
    args.insert(args.end(), {"--coordinator=" + coordinator_.address, "ask", "--json",
                             "--model=llama-3.1-8b", "Tell me a long story about looms"});
    auto client = Spawn("loom", args, dir_ + "/client.out");
    std::string victim;
    ASSERT_TRUE(WaitFor([&] { return !(victim = BusyDevice()).empty(); }, absl::Seconds(20)));
    workers_[victim].process->Signal(fault);
    ASSERT_EQ(WEXITSTATUS(client->Wait(absl::Seconds(60))), 0) << ReadFile(dir_ + "/client.out");
    std::string out = ReadFile(dir_ + "/client.out");
    json r = json::parse(out.substr(out.find('{')), nullptr, false);
    ASSERT_FALSE(r.is_discarded()) << out;
    const std::string survivor = victim == "dev-a" ? "dev-b" : "dev-a";
    ASSERT_EQ(r["contributions"].size(), 1u) << r.dump();
    EXPECT_EQ(r["contributions"][0]["deviceId"], survivor);
    json records = LedgerRecords(r["requestId"]);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0]["deviceId"], survivor) << "only the successful attempt is credited";
    // The failed attempt is in the response's attempt log, not in the ledger.
    bool failed_seen = false;
    for (const auto& a : r["attempts"]) {
      if (a["deviceId"] == victim) failed_seen = a["outcome"] != "ATTEMPT_OUTCOME_OK";
    }
    EXPECT_TRUE(failed_seen) << r["attempts"].dump();
    ExpectLedgerVerifies();
  }
};

TEST_F(FaultTest, ALyingWorkerIsPaidOnlyForTheTokensReceivedAndIsFlagged) {
  StartCoordinator();
  StartWorker("dev-liar", "llama-3.1-8b", {"--sim_usage_claim_factor=5"});
  ASSERT_TRUE(WaitForDevices({"dev-liar"}));
  json r = AskJson("Tell me about looms");
  ASSERT_EQ(r["contributions"].size(), 1u) << r.dump();
  json records = LedgerRecords(r["requestId"]);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["tokenCount"], "24") << "it claimed 120";
  CommandResult devices = Loom({"--coordinator=" + coordinator_.address, "devices"});
  EXPECT_THAT(devices.out, HasSubstr("overclaimed usage 1x"));
  CommandResult metrics = RunCommand("/usr/bin/curl", {"-s", "http://" + coordinator_.http + "/metrics"});
  EXPECT_THAT(metrics.out, HasSubstr("loom_usage_overclaims_total 1"));
  EXPECT_THAT(metrics.out, HasSubstr("loom_device_usage_overclaims{device=\"dev-liar\"} 1"));
  EXPECT_THAT(coordinator_.process->Log(), HasSubstr("device dev-liar claimed 120 output tokens"));
}

TEST_F(FaultTest, AWorkerKilledMidStreamIsReplacedAndNotPaid) { RequestSurvivesSignalToItsDevice(SIGKILL); }

TEST_F(FaultTest, AWorkerHungMidStreamIsReplacedAndNotPaid) { RequestSurvivesSignalToItsDevice(SIGSTOP); }

TEST_F(FaultTest, CoordinatorKilledWhileSettlingUnderLoadRestartsWithASoundLedger) {
  // Short request timeout and reservation margin: a reservation orphaned by the crash expires
  // about 1.5 s after it was made.
  const std::vector<std::string> flags = {"--request_timeout_ms=1000", "--reservation_margin_ms=500"};
  StartCoordinator("127.0.0.1:0", flags);
  const std::string address = coordinator_.address;
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 200 && !stop; ++i) {
        CommandResult r = Loom({"--coordinator=" + address, "--timeout_ms=5000", "ask", "--json",
                                "--model=llama-3.1-8b", "What is a loom?"});
        ++(r.exit_code == 0 ? ok : failed);
      }
    });
  }
  // Kill it once settlements are flowing.
  ASSERT_TRUE(WaitFor([&] { return ok >= 10; }, absl::Seconds(60)));
  coordinator_.process->Signal(SIGKILL);
  coordinator_.process->Wait(absl::Seconds(10));
  StartCoordinator(address, flags);  // same port, same ledger
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"})) << "workers re-register by themselves";
  const int ok_before = ok;
  ASSERT_TRUE(WaitFor([&] { return ok >= ok_before + 10; }, absl::Seconds(60)));
  stop = true;
  for (auto& c : clients) c.join();

  ExpectLedgerVerifies();
  // Exactly once: no (request, sub-task) is credited twice, and every settled request was
  // charged exactly the sum of its records.
  json records = AllRecords();
  std::set<std::string> seen;
  for (const auto& rec : records) {
    const std::string key = absl::StrCat(rec["requestId"].get<std::string>(), "/",
                                         rec["subTaskId"].get<std::string>());
    EXPECT_TRUE(seen.insert(key).second) << "settled twice: " << key;
  }
  EXPECT_GE(static_cast<int>(records.size()), ok.load());
  // Reservations left by the crash expire: all credits become available again.
  auto available_is_balance = [&] {
    CommandResult b = RunCommand("loom-ledger", {"--db=" + db_, "balance", "client:anonymous", "--format=json"});
    json j = json::parse(b.out, nullptr, false);
    return !j.is_discarded() && JsonInt64(j, "availableMicro") == JsonInt64(j, "balanceMicro");
  };
  EXPECT_TRUE(WaitFor(available_is_balance, absl::Seconds(20)));
}

// The report: after a coordinator crash a client's credits stayed reserved for 6 minutes (402
// for 364 s with its balance intact). With the default request timeout (300 s), a request is
// in flight on a slow device when the coordinator is SIGKILLed; the restarted coordinator
// releases what its predecessor held before it serves, so the credits are available at once.
TEST_F(FaultTest, ARestartedCoordinatorReleasesTheHoldsItsCrashedRunLeft) {
  StartCoordinator();
  const std::string address = coordinator_.address;
  StartWorker("dev-slow", "llama-3.1-8b", {"--sim_tokens_per_second=5", "--sim_output_tokens=400"});
  ASSERT_TRUE(WaitForDevices({"dev-slow"}));
  auto client = Spawn("loom", [&] {
    std::vector<std::string> args = ClientSecurityArgs();
    for (const char* a : {"ask", "--json", "--model=llama-3.1-8b", "Tell me a long story."}) args.push_back(a);
    args.push_back("--coordinator=" + address);
    return args;
  }(), dir_ + "/client.log");
  auto held = [&] {
    CommandResult b = RunCommand("loom-ledger", {"--db=" + db_, "balance", "client:anonymous", "--format=json"});
    json j = json::parse(b.out, nullptr, false);
    return !j.is_discarded() && JsonInt64(j, "availableMicro") != JsonInt64(j, "balanceMicro");
  };
  ASSERT_TRUE(WaitFor(held, absl::Seconds(20))) << "the request never reserved";
  coordinator_.process->Signal(SIGKILL);
  coordinator_.process->Wait(absl::Seconds(10));
  StartCoordinator(address);  // same port, same ledger; ready means orphans were released
  EXPECT_FALSE(held()) << "the crashed run's reservation still holds the client's credits";
  EXPECT_THAT(ReadFile(dir_ + "/coordinator.log"),
              HasSubstr("released 1 reservation(s) left by an earlier run"));
  client->Signal(SIGKILL);
  client->Wait(absl::Seconds(10));
  ExpectLedgerVerifies();
}

TEST_F(FaultTest, RequestsWhileDevicesComeAndGoSucceedOrFailClearly) {
  StartCoordinator();
  for (const char* d : {"dev-a", "dev-b", "dev-c"}) StartWorker(d, "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b", "dev-c"}));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  absl::Mutex mu;
  std::vector<std::string> unclear;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 200 && !stop; ++i) {
        CommandResult r = Loom({"--coordinator=" + coordinator_.address, "--timeout_ms=20000",
                                "ask", "--json", "What is a loom?"});
        if (r.exit_code == 0) {
          ++ok;
        } else if (r.exit_code != 1 || r.err.find("loom: ") != 0 || r.err.size() < 20) {
          absl::MutexLock lock(&mu);
          unclear.push_back(absl::StrCat("exit ", r.exit_code, ": ", r.err));
        }
      }
    });
  }
  // Churn: kill one device, start a new one, a few rounds.
  for (int round = 0; round < 4; ++round) {
    const int ok_before = ok;
    ASSERT_TRUE(WaitFor([&] { return ok >= ok_before + 3; }, absl::Seconds(60)));
    const std::string gone = round % 2 ? "dev-b" : "dev-a";
    const std::string name = absl::StrCat("dev-new-", round);
    workers_[gone].process->Signal(SIGKILL);
    StartWorker(name, "llama-3.1-8b");
    workers_[gone] = std::move(workers_[name]);
    workers_.erase(name);
  }
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_TRUE(unclear.empty()) << unclear.front();
  EXPECT_GT(ok.load(), 12);
  ExpectLedgerVerifies();
}

}  // namespace
}  // namespace loom::testing
