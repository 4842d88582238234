// Integration tests: real loom-coordinator and loom-worker processes on loopback, driven with
// the loom and loom-ledger CLIs. Processes are killed to prove retries and re-registration;
// the ledger is checked afterwards.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using MeshTest = MeshFixture;

TEST_F(MeshTest, CliRequestIsAnsweredAndRecordedInTheLedger) {
  StartCoordinator();
  StartWorker("dev-llama", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-llama"}));

  // Streaming (default): the answer on stdout, progress and summary on stderr.
  CommandResult streamed =
      Loom({"--coordinator=" + coordinator_.address, "ask", "Tell me about looms"});
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_THAT(streamed.out, HasSubstr("[simulated] llama-3.1-8b on dev-llama re: Tell me about looms"));
  EXPECT_THAT(streamed.err, HasSubstr("served by dev-llama"));

  json response = AskJson("What is a loom?");
  const std::string request_id = response["requestId"];
  EXPECT_THAT(response["output"].get<std::string>(), HasSubstr("[simulated]"));
  ASSERT_EQ(response["contributions"].size(), 1u);
  EXPECT_EQ(response["contributions"][0]["deviceId"], "dev-llama");
  EXPECT_EQ(response["usage"]["completionTokens"], "24");

  json records = LedgerRecords(request_id);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["deviceId"], "dev-llama");
  EXPECT_EQ(records[0]["providerId"], "prov-dev-llama");
  EXPECT_EQ(records[0]["tokenCount"], "24");
  EXPECT_EQ(records[0]["creditsMicro"], response["costMicro"]);

  CommandResult table = RunCommand("loom-ledger", {"--db=" + db_, "records"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.out, HasSubstr(request_id));
}

TEST_F(MeshTest, KilledWorkerExpiresAndRequestsSucceedOnTheOthers) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));

  workers_["dev-a"].process->Signal(SIGKILL);
  ASSERT_NE(workers_["dev-a"].process->Wait(absl::Seconds(10)), -1);
  // Before expiry the dead device may still be chosen: the attempt fails and moves on.
  json response = AskJson("What is the capital of Peru?", {"--model=llama-3.1-8b"});
  EXPECT_EQ(response["contributions"][0]["deviceId"], "dev-b");

  ASSERT_TRUE(WaitForDevices({"dev-b"})) << "dead device never expired";
  CommandResult listed = Loom({"--coordinator=" + coordinator_.address, "devices"});
  EXPECT_THAT(listed.out, Not(HasSubstr("dev-a")));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(AskJson("Who wrote Hamlet?")["contributions"][0]["deviceId"], "dev-b");
  }
}

TEST_F(MeshTest, WorkerFailingMidRequestIsRetriedOnAnotherDevice) {
  StartCoordinator();
  // Ties go to the lower device id, so the faulty device is tried first.
  StartWorker("dev-a-faulty", "mistral-7b", {"--sim_fault=fail:5"});
  StartWorker("dev-b-good", "mistral-7b");
  ASSERT_TRUE(WaitForDevices({"dev-a-faulty", "dev-b-good"}));

  json response = AskJson("What is the boiling point of water?");
  ASSERT_EQ(response["attempts"].size(), 2u);
  EXPECT_EQ(response["attempts"][0]["deviceId"], "dev-a-faulty");
  EXPECT_EQ(response["attempts"][0]["outcome"], "ATTEMPT_OUTCOME_FAILED");
  EXPECT_THAT(response["attempts"][0]["reason"].get<std::string>(), HasSubstr("simulated fault"));
  EXPECT_EQ(response["attempts"][1]["deviceId"], "dev-b-good");
  EXPECT_THAT(response["output"].get<std::string>(), HasSubstr("on dev-b-good"));
  EXPECT_THAT(response["output"].get<std::string>(), Not(HasSubstr("dev-a-faulty")));

  json records = LedgerRecords(response["requestId"]);
  ASSERT_EQ(records.size(), 1u) << "only the successful attempt is credited";
  EXPECT_EQ(records[0]["deviceId"], "dev-b-good");
  EXPECT_EQ(records[0]["attempt"], 2);
}

TEST_F(MeshTest, WorkerDyingMidStreamIsRetriedAndTheStreamShowsTheRetry) {
  StartCoordinator();
  StartWorker("dev-a-dies", "mistral-7b", {"--sim_fault=exit:5"});
  StartWorker("dev-b-good", "mistral-7b");
  ASSERT_TRUE(WaitForDevices({"dev-a-dies", "dev-b-good"}));

  CommandResult r = Loom({"--coordinator=" + coordinator_.address, "ask", "Who painted the Mona Lisa?"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[retry]"));
  // dev-b-good continued whatever text of dev-a-dies had arrived before it died (none, if
  // the process died before its first write left it): one answer, one header, no break; a
  // device whose text the answer keeps is paid for it.
  EXPECT_THAT(r.err, HasSubstr("dev-b-good (mistral-7b)"));
  EXPECT_TRUE(absl::StartsWith(r.out, " [simulated]")) << r.out;
  EXPECT_EQ(std::string(absl::StripTrailingAsciiWhitespace(r.out)).find('\n'), std::string::npos)
      << r.out;
  size_t headers = 0;
  for (size_t at = r.out.find("[simulated]"); at != std::string::npos;
       at = r.out.find("[simulated]", at + 1)) {
    ++headers;
  }
  EXPECT_EQ(headers, 1u) << r.out;
  int status = workers_["dev-a-dies"].process->Wait(absl::Seconds(10));
  ASSERT_NE(status, -1) << "the faulty worker should have exited";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75);
}

TEST_F(MeshTest, WorkersRegisterAgainAfterACoordinatorRestart) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "qwen2.5-coder-7b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  json before = AskJson("What is the capital of Chile?");

  const std::string address = coordinator_.address;
  coordinator_.process->Signal(SIGKILL);
  ASSERT_NE(coordinator_.process->Wait(absl::Seconds(10)), -1);
  StartCoordinator(address);  // same port, same ledger
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"})) << "workers did not come back";

  json after = AskJson("What is the capital of Spain?");
  EXPECT_EQ(LedgerRecords(before["requestId"]).size(), 1u) << "the ledger survives the crash";
  EXPECT_EQ(LedgerRecords(after["requestId"]).size(), 1u);
}

TEST_F(MeshTest, StoppedWorkerDeregistersAtOnce) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  workers_["dev-a"].process->Signal(SIGTERM);
  int status = workers_["dev-a"].process->Wait(absl::Seconds(10));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_THAT(workers_["dev-a"].process->Log(), HasSubstr("deregistered dev-a"));
  EXPECT_EQ(Devices(), std::set<std::string>({"dev-b"}));
}

// The worker's refusal beyond max_concurrency is proven in WorkerServiceTest; here parallel
// clients all succeed while one device takes a single request at a time.
TEST_F(MeshTest, ParallelRequestsAllSucceedWhenOneDeviceTakesOneAtATime) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b", {"--max_concurrency=1", "--sim_tokens_per_second=400"});
  StartWorker("dev-b", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b"}));
  std::vector<json> responses(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] { responses[i] = AskJson(absl::StrCat("What is the population of city number ", i, "?")); });
  }
  for (auto& t : clients) t.join();
  for (const auto& r : responses) {
    EXPECT_EQ(r["contributions"].size(), 1u);
    EXPECT_FALSE(r["output"].get<std::string>().empty());
  }
}

TEST_F(MeshTest, BadConfigFileIsOneClearLineAndANonZeroExit) {
  const std::string config = dir_ + "/bad.json";
  std::ofstream(config) << R"({"device_id": "d1", "models": [{"info": {"name": "llama-3.1-8b"}, "sim": {"output_tokenz": 5}}]})";
  CommandResult r = RunCommand("loom-worker", {"--config=" + config, "--coordinator=127.0.0.1:1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr(config));
  EXPECT_THAT(r.err, HasSubstr("output_tokenz"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  std::ofstream(config) << R"({"device_id": "d1", "models": []})";
  r = RunCommand("loom-worker", {"--config=" + config});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("models"));

  r = RunCommand("loom-coordinator", {"--missed_heartbeats=1", "--ledger_db=" + db_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--missed_heartbeats"));
}

TEST_F(MeshTest, ClientErrorsAreOneLineWithNonZeroExits) {
  StartCoordinator();
  StartWorker("dev-a", "llama-3.1-8b");
  ASSERT_TRUE(WaitForDevices({"dev-a"}));
  CommandResult unknown_model =
      Loom({"--coordinator=" + coordinator_.address, "ask", "hi", "--model=gpt-9"});
  EXPECT_EQ(unknown_model.exit_code, 1);
  EXPECT_THAT(unknown_model.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(unknown_model.err, HasSubstr("gpt-9"));

  CommandResult no_prompt = Loom({"--coordinator=" + coordinator_.address, "ask"});
  EXPECT_EQ(no_prompt.exit_code, 2);
  CommandResult bad_command = Loom({"frobnicate"});
  EXPECT_EQ(bad_command.exit_code, 2);
  EXPECT_THAT(bad_command.err, HasSubstr("unknown command"));
  CommandResult no_coordinator = Loom({"--coordinator=127.0.0.1:1", "--timeout_ms=2000", "devices"});
  EXPECT_EQ(no_coordinator.exit_code, 1);
  CommandResult no_ledger = RunCommand("loom-ledger", {"--db=" + dir_ + "/missing.db", "records"});
  EXPECT_EQ(no_ledger.exit_code, 1);
  EXPECT_THAT(no_ledger.err, HasSubstr("loom-ledger: "));
}

}  // namespace
}  // namespace loom::testing
