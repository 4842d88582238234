// Integration tests of the compilation pipeline with real processes: the worked example of
// DESIGN.md, fan-out overlap, retries after a device dies or hangs mid-sub-task, total
// failure, client cancellation reaching the workers, and compete.
#include <fstream>
#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kWorkedExample[] =
    "Translate this Python code to Rust and explain the key differences between the two "
    "implementations: def total(xs): return sum(x * x for x in xs)";

class PipelineTest : public MeshFixture {
 protected:
  // One device per family: qwen-coder, llama, mistral.
  void StartThreeFamilies(std::vector<std::string> qwen_extra = {},
                          std::vector<std::string> all_extra = {}) {
    std::vector<std::string> q = all_extra;
    q.insert(q.end(), qwen_extra.begin(), qwen_extra.end());
    StartWorker("dev-qwen", "qwen2.5-coder-7b", q);
    StartWorker("dev-llama", "llama-3.1-8b", all_extra);
    StartWorker("dev-mistral", "mistral-7b", all_extra);
    ASSERT_TRUE(WaitForDevices({"dev-qwen", "dev-llama", "dev-mistral"}));
  }

  void ExpectClientCancelStopsTheWorkers(bool unary);
  void StartRoutedMesh(const std::string& router_model, std::vector<std::string> extra = {});
  // The ledger's route records of an answered request (each on the router's device).
  int RouteRecords(const json& answer) {
    int n = 0;
    for (const auto& rec : Records(answer["requestId"])) {
      if (rec.value("role", "") != "CONTRIBUTION_ROLE_ROUTE") continue;
      EXPECT_EQ(rec["deviceId"], "gpu-router") << rec.dump();
      ++n;
    }
    return n;
  }
  Daemon standin_;

  // Whether any device reports work in progress.
  bool AnyDeviceBusy() {
    CommandResult d = Loom({"--coordinator=" + coordinator_.address, "devices", "--json"});
    json devices = json::parse(d.out, nullptr, false);
    if (devices.is_discarded()) return false;
    for (const auto& dev : devices["devices"]) {
      if (dev["load"]["active"].get<int>() > 0) return true;
    }
    return false;
  }

  json Records(const std::string& request_id) { return LedgerRecords(request_id); }
};

TEST_F(PipelineTest, WorkedExampleRunsCodeOnQwenCoderThenReasoningOnLlamaWithItsOutput) {
  StartCoordinator();
  StartThreeFamilies();
  json r = AskJson(kWorkedExample);
  ASSERT_EQ(r["plan"]["kind"], "PLAN_KIND_COMPILED");
  const json& tasks = r["plan"]["subTasks"];
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0]["category"], "TASK_CATEGORY_CODE");
  EXPECT_EQ(tasks[0]["orderIndex"], 0);
  EXPECT_EQ(tasks[1]["category"], "TASK_CATEGORY_REASONING");
  EXPECT_EQ(tasks[1]["orderIndex"], 1);
  ASSERT_EQ(tasks[1]["dependsOn"].size(), 1u);
  EXPECT_EQ(tasks[1]["dependsOn"][0], tasks[0]["id"]);

  const json& results = r["results"];
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["deviceId"], "dev-qwen");
  EXPECT_EQ(results[1]["deviceId"], "dev-llama");
  // B's prompt, as sent to the llama device, carries A's output from the qwen-coder device.
  const std::string a_output = results[0]["output"];
  EXPECT_THAT(a_output, HasSubstr("[simulated] qwen2.5-coder-7b on dev-qwen"));
  EXPECT_THAT(results[1]["input"].get<std::string>(), HasSubstr(a_output));
  EXPECT_THAT(results[1]["output"].get<std::string>(), HasSubstr("on dev-llama"));

  // Paid: both sub-tasks and the synthesis, weights summing to 1, client charged the sum.
  json records = Records(r["requestId"]);
  ASSERT_EQ(records.size(), 3u);
  double weights = 0;
  int64_t credits = 0;
  std::set<std::string> roles;
  for (const auto& rec : records) {
    weights += rec["weight"].get<double>();
    credits += std::stoll(rec["creditsMicro"].get<std::string>());
    roles.insert(rec["role"]);
  }
  EXPECT_NEAR(weights, 1.0, 1e-6);
  EXPECT_EQ(std::to_string(credits), r["costMicro"].get<std::string>());
  EXPECT_EQ(roles, (std::set<std::string>{"CONTRIBUTION_ROLE_EXECUTE", "CONTRIBUTION_ROLE_SYNTHESIZE"}));

  // loom plan shows the same graph without running anything.
  CommandResult plan = Loom({"--coordinator=" + coordinator_.address, "plan", kWorkedExample});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_THAT(plan.out, HasSubstr("plan compiled"));
  EXPECT_THAT(plan.out, HasSubstr("dev-qwen"));
  EXPECT_THAT(plan.out, HasSubstr("dev-llama"));
  EXPECT_THAT(plan.out, HasSubstr("why: code: chose dev-qwen/qwen2.5-coder-7b"));
}

TEST_F(PipelineTest, IndependentSubTasksOverlapOnTwoDevices) {
  StartCoordinator();
  // Slow enough (about a second per sub-task) that a sequential run could not interleave.
  StartThreeFamilies({}, {"--sim_tokens_per_second=40", "--sim_output_tokens=40"});
  CommandResult r = Loom(
      {"--coordinator=" + coordinator_.address, "ask",
               "Write a poem about the sea. Also, translate 'good morning' into French."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // From the recorded event order: both sub-tasks started before either finished.
  std::vector<std::string> lines = absl::StrSplit(r.err, '\n');
  int started = 0, first_done_after = -1;
  std::set<std::string> devices;
  for (const std::string& line : lines) {
    if (absl::StartsWith(line, "[start]") && !absl::StrContains(line, "synthesis")) {
      ++started;
      devices.insert(line.substr(line.find(" on ") + 4));
    }
    if (absl::StartsWith(line, "[done]") && first_done_after < 0) first_done_after = started;
  }
  EXPECT_EQ(first_done_after, 2) << r.err;
  EXPECT_EQ(devices.size(), 2u) << "the two sub-tasks ran on different devices\n" << r.err;
}

TEST_F(PipelineTest, DeviceKilledMidSubTaskIsRetriedElsewhereAndTheRequestSucceeds) {
  StartCoordinator();
  StartThreeFamilies({"--sim_fault=exit:5"});
  json r = AskJson(kWorkedExample);
  ASSERT_EQ(r["results"].size(), 2u);
  EXPECT_NE(r["results"][0]["deviceId"], "dev-qwen");
  bool qwen_failed = false;
  for (const auto& a : r["attempts"]) {
    if (a["deviceId"] == "dev-qwen") {
      qwen_failed = a["outcome"] == "ATTEMPT_OUTCOME_FAILED";
    }
  }
  EXPECT_TRUE(qwen_failed);
  for (const auto& rec : Records(r["requestId"])) EXPECT_NE(rec["deviceId"], "dev-qwen");
  EXPECT_NE(workers_["dev-qwen"].process->Wait(absl::Seconds(10)), -1) << "the device died";
}

TEST_F(PipelineTest, HungDeviceHitsTheAttemptDeadlineAndTheSubTaskIsRetried) {
  StartCoordinator("127.0.0.1:0", {"--attempt_timeout_ms=1500"});
  StartThreeFamilies({"--sim_fault=hang:3"});
  json r = AskJson(kWorkedExample);
  ASSERT_EQ(r["results"].size(), 2u);
  EXPECT_NE(r["results"][0]["deviceId"], "dev-qwen");
  bool deadline_seen = false;
  for (const auto& a : r["attempts"]) {
    deadline_seen |= a["deviceId"] == "dev-qwen" &&
                     a["reason"].get<std::string>().find("DEADLINE_EXCEEDED") != std::string::npos;
  }
  EXPECT_TRUE(deadline_seen) << r["attempts"].dump();
}

TEST_F(PipelineTest, EveryDeviceFailingIsAClearErrorAndNoCharge) {
  StartCoordinator();
  StartThreeFamilies({}, {"--sim_fault=fail:0"});
  CommandResult r = Loom({"--coordinator=" + coordinator_.address, "ask", kWorkedExample});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("sub-task"));
  EXPECT_THAT(r.err, HasSubstr("failed after 3 attempt(s)"));
  CommandResult records = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  EXPECT_EQ(records.exit_code, 0) << records.err;
  EXPECT_EQ(records.out, "[]\n") << "nothing is charged or credited for failed work";
}

// Interrupts a `loom ask` (streamed, or unary with --json) while its sub-tasks run, then
// checks the workers stop and the request is billed only for what was produced until then
// (the abandoned-request rule): no record near a whole 200-token answer, books balanced.
void PipelineTest::ExpectClientCancelStopsTheWorkers(bool unary) {
  StartCoordinator();
  // Each sub-task would take about 40 s.
  StartThreeFamilies({}, {"--sim_tokens_per_second=5", "--sim_output_tokens=200"});
  std::vector<std::string> args = {"--plaintext", "--coordinator=" + coordinator_.address, "ask"};
  if (unary) args.push_back("--json");
  args.push_back(kWorkedExample);
  auto client = Spawn("loom", args, dir_ + "/client.log");
  ASSERT_TRUE(WaitFor([&] { return AnyDeviceBusy(); }, absl::Seconds(20)))
      << "no device ever got the work";
  client->Signal(SIGINT);
  ASSERT_NE(client->Wait(absl::Seconds(10)), -1);
  const int64_t cancelled_at = absl::ToUnixMillis(absl::Now());
  // Idle as reported by the workers themselves, in heartbeats sent after the cancel.
  auto idle_reported_after_cancel = [&] {
    CommandResult d = Loom({"--coordinator=" + coordinator_.address, "devices", "--json"});
    json devices = json::parse(d.out, nullptr, false);
    if (devices.is_discarded()) return false;
    for (const auto& dev : devices["devices"]) {
      if (std::stoll(dev["lastHeartbeatUnixMs"].get<std::string>()) < cancelled_at + 300) return false;
      if (dev["load"]["active"].get<int>() != 0) return false;
    }
    return true;
  };
  EXPECT_TRUE(WaitFor(idle_reported_after_cancel, absl::Seconds(20)))
      << "workers kept generating after the client went away";
  CommandResult records = RunCommand("loom-ledger", {"--db=" + db_, "records", "--format=json"});
  const json parsed = json::parse(records.out, nullptr, false);
  ASSERT_TRUE(parsed.is_array()) << records.out;
  for (const json& r : parsed) {
    EXPECT_LT(std::stoll(r.value("tokenCount", "0")), 100) << "billed for more than was produced: " << r.dump();
  }
  CommandResult verify = RunCommand("loom-ledger", {"--db=" + db_, "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST_F(PipelineTest, ClientCancelReachesTheWorkersAndTheirActiveCountDropsToZero) {
  ExpectClientCancelStopsTheWorkers(/*unary=*/false);
}

// Complete (unary) runs as a sync handler, which hears of the cancel only by asking.
TEST_F(PipelineTest, UnaryClientCancelAlsoReachesTheWorkers) {
  ExpectClientCancelStopsTheWorkers(/*unary=*/true);
}

TEST_F(PipelineTest, UnaryRequestsBeyondRequestThreadsWaitThenAreRefusedWithTheReason) {
  StartCoordinator("127.0.0.1:0", {"--request_threads=1"});
  StartThreeFamilies({}, {"--sim_tokens_per_second=5", "--sim_output_tokens=200"});
  // Holds the only request slot for about 40 s.
  std::vector<std::string> args = ClientSecurityArgs();
  for (const char* a : {"ask", "--json"}) args.push_back(a);
  args.push_back("--coordinator=" + coordinator_.address);
  args.push_back(kWorkedExample);
  auto holder = Spawn("loom", args, dir_ + "/holder.log");
  ASSERT_TRUE(WaitFor([&] { return AnyDeviceBusy() || holder->Wait(absl::ZeroDuration()) != -1; },
                      absl::Seconds(20)))
      << "no device seen busy" << MeshLogs();
  ASSERT_TRUE(holder->running()) << "the request holding the slot ended: " << holder->Log()
                                 << MeshLogs();
  CommandResult waited = Loom({"--coordinator=" + coordinator_.address, "--timeout_ms=1500", "ask",
                               "--json", "What is a loom?"});
  EXPECT_EQ(waited.exit_code, 1);
  EXPECT_THAT(waited.err, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(waited.err, HasSubstr("waited for a free slot"));

  // One request may wait per slot; of two more, whichever comes second is refused at once
  // (each waiting call holds a gRPC thread, so the wait is bounded).
  std::vector<std::unique_ptr<Process>> extra;
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> more = ClientSecurityArgs();
    for (std::string a : {"--coordinator=" + coordinator_.address, std::string("--timeout_ms=60000"),
                          std::string("ask"), std::string("--json"), std::string("What is a loom?")}) {
      more.push_back(a);
    }
    extra.push_back(Spawn("loom", more, absl::StrCat(dir_, "/extra-", i, ".log")));
  }
  auto ended = [&]() -> Process* {
    for (auto& p : extra) {
      if (p->Wait(absl::ZeroDuration()) != -1) return p.get();
    }
    return nullptr;
  };
  ASSERT_TRUE(WaitFor([&] { return ended() != nullptr; }, absl::Seconds(20)))
      << "neither extra request was refused";
  Process* refused = ended();
  EXPECT_EQ(WEXITSTATUS(refused->Wait(absl::ZeroDuration())), 1);
  EXPECT_THAT(refused->Log(), HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(refused->Log(), HasSubstr("the coordinator is busy"));
  for (auto& p : extra) {
    if (p.get() != refused) {
      EXPECT_TRUE(p->running()) << "the other one waits for the slot";
    }
  }
  for (auto& p : extra) p->Signal(SIGINT);
  holder->Signal(SIGINT);
  EXPECT_NE(holder->Wait(absl::Seconds(10)), -1);
}

TEST_F(PipelineTest, CompetePicksOneAnswerWithAReason) {
  StartCoordinator();
  StartThreeFamilies();
  json r = AskJson("Describe the sea.", {"--mode=compete"});
  ASSERT_EQ(r["plan"]["kind"], "PLAN_KIND_COMPETE");
  const json& c = r["compete"];
  ASSERT_EQ(c["candidates"].size(), 3u);
  int winners = 0;
  std::string winner_output;
  for (const auto& cand : c["candidates"]) {
    if (cand["winner"].get<bool>()) {
      ++winners;
      winner_output = cand["output"];
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(r["output"], winner_output);
  EXPECT_EQ(c["method"], "agreement");
  EXPECT_THAT(c["reason"].get<std::string>(), HasSubstr("agrees most"));
  json records = Records(r["requestId"]);
  EXPECT_EQ(records.size(), 3u) << "every candidate is paid for its tokens";
}

// The provider's first hour: a worker in front of a model server that is still loading is
// listed with the reason and gets no work; once the server answers it serves. One pointed at a
// base URL without /v1 is told so.
TEST_F(PipelineTest, AWorkerInFrontOfAModelServerThatCannotServeGetsNoWorkUntilItCan) {
  std::string error;
  const std::string loaded = dir_ + "/model-loaded";
  Daemon standin = StartDaemon("openai_standin", dir_, "standin",
                               {"--models=llama-3.1-standin", "--flavor=llamacpp",
                                "--loading_until_file=" + loaded},
                               &error);
  ASSERT_TRUE(standin.process) << error;
  StartCoordinator();
  auto start = [&](const std::string& device, const std::string& base_url) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address,
                                     "--device_id=" + device, "--provider_id=prov-" + device,
                                     "--openai_base_url=" + base_url, "--model=llama-3.1-standin",
                                     "--upstream_check_interval_ms=200"};
    for (std::string& a : WorkerSecurityArgs(device, "prov-" + device)) args.push_back(std::move(a));
    workers_[device] = StartDaemon("loom-worker", dir_, device, args, &error);
    ASSERT_TRUE(workers_[device].process) << error;
  };
  start("gpu-loading", standin.address);
  const std::string origin = standin.address.substr(0, standin.address.rfind("/v1"));
  start("gpu-no-v1", origin);
  ASSERT_TRUE(WaitForDevices({"gpu-loading", "gpu-no-v1"}));
  auto device = [&](const std::string& id) {
    CommandResult listed = Loom({"--coordinator=" + coordinator_.address, "devices", "--json"});
    json devices = json::parse(listed.out, nullptr, false);
    for (const auto& d : devices.value("devices", json::array())) {
      if (d["deviceId"] == id) return d;
    }
    return json();
  };
  json loading = device("gpu-loading");
  EXPECT_EQ(loading["state"], "DEVICE_STATE_SUSPECT") << loading.dump();
  EXPECT_THAT(loading["load"]["upstreamProblem"].get<std::string>(), HasSubstr("Loading model"));
  json no_v1 = device("gpu-no-v1");
  EXPECT_EQ(no_v1["state"], "DEVICE_STATE_SUSPECT") << no_v1.dump();
  EXPECT_THAT(no_v1["load"]["upstreamProblem"].get<std::string>(),
              HasSubstr("try --openai_base_url=" + standin.address));
  CommandResult table = Loom({"--coordinator=" + coordinator_.address, "devices"});
  EXPECT_THAT(table.out, HasSubstr("upstream: "));

  CommandResult refused = Loom({"--coordinator=" + coordinator_.address, "ask", "What is a loom?"});
  EXPECT_NE(refused.exit_code, 0) << "no device can serve: " << refused.out;
  EXPECT_EQ(standin.process->Log().find("POST /v1/chat/completions"), std::string::npos);

  // The model finishes loading: the worker's next check puts the device back in rotation.
  { std::ofstream(loaded) << "done"; }
  ASSERT_TRUE(WaitFor([&] { return device("gpu-loading").value("state", "") == "DEVICE_STATE_HEALTHY"; },
                      absl::Seconds(20)))
      << MeshLogs();
  // The server tells the size it would not while loading; the worker registers again with it.
  EXPECT_TRUE(WaitFor([&] {
    json d = device("gpu-loading");
    return d.is_object() && std::abs(d["models"][0].value("parametersB", 0.0) - 8.03) < 0.01;
  }, absl::Seconds(20))) << device("gpu-loading").dump();
  ASSERT_TRUE(WaitFor([&] { return device("gpu-loading").value("state", "") == "DEVICE_STATE_HEALTHY"; },
                      absl::Seconds(20)));
  json r = AskJson("What is a loom?");
  ASSERT_EQ(r["contributions"].size(), 1u) << r.dump();
  EXPECT_EQ(r["contributions"][0]["deviceId"], "gpu-loading");
  EXPECT_EQ(device("gpu-no-v1")["state"], "DEVICE_STATE_SUSPECT");
  // Started once the server answers, a worker advertises the size it reports, not a default.
  start("gpu-late", standin.address);
  ASSERT_TRUE(WaitForDevices({"gpu-loading", "gpu-no-v1", "gpu-late"}));
  EXPECT_NEAR(device("gpu-late")["models"][0]["parametersB"].get<double>(), 8.03, 0.01);
}

TEST_F(PipelineTest, WorkersOnTheOpenAIBackendAnswerACompiledRequest) {
  // An OpenAI-compatible server (the test stand-in) with two models, behind two real workers.
  std::string error;
  Daemon standin = StartDaemon("openai_standin", dir_, "standin",
                               {"--models=qwen2.5-coder-standin,llama-3.1-standin"}, &error);
  ASSERT_TRUE(standin.process) << error;
  StartCoordinator();
  for (const auto& [device, model] : std::vector<std::pair<std::string, std::string>>{
           {"gpu-qwen", "qwen2.5-coder-standin"}, {"gpu-llama", "llama-3.1-standin"}}) {
    std::vector<std::string> args = {"--coordinator=" + coordinator_.address,
                                     "--device_id=" + device, "--provider_id=prov-" + device,
                                     "--openai_base_url=" + standin.address, "--model=" + model};
    for (std::string& a : WorkerSecurityArgs(device, "prov-" + device)) args.push_back(std::move(a));
    workers_[device] = StartDaemon("loom-worker", dir_, device, args, &error);
    ASSERT_TRUE(workers_[device].process) << error;
  }
  ASSERT_TRUE(WaitForDevices({"gpu-qwen", "gpu-llama"}));
  // A worker discovering the server's models advertises both, as real (not simulated).
  std::string discover_error;
  std::vector<std::string> both = {"--coordinator=" + coordinator_.address, "--device_id=gpu-both",
                                   "--openai_base_url=" + standin.address, "--discover"};
  for (std::string& a : WorkerSecurityArgs("gpu-both", "gpu-both")) both.push_back(std::move(a));
  workers_["gpu-both"] = StartDaemon("loom-worker", dir_, "gpu-both", both, &discover_error);
  ASSERT_TRUE(workers_["gpu-both"].process) << discover_error;
  ASSERT_TRUE(WaitForDevices({"gpu-qwen", "gpu-llama", "gpu-both"}));
  CommandResult listed = Loom({"--coordinator=" + coordinator_.address, "devices", "--json"});
  json devices = json::parse(listed.out);
  for (const auto& d : devices["devices"]) {
    EXPECT_FALSE(d["simulated"].get<bool>()) << d.dump();
    if (d["deviceId"] == "gpu-both") {
      EXPECT_EQ(d["models"].size(), 2u);
    }
  }

  json r = AskJson(kWorkedExample);
  ASSERT_EQ(r["plan"]["kind"], "PLAN_KIND_COMPILED");
  ASSERT_EQ(r["results"].size(), 2u);
  EXPECT_THAT(r["results"][0]["model"].get<std::string>(), HasSubstr("qwen2.5-coder-standin"));
  EXPECT_THAT(r["results"][0]["output"].get<std::string>(),
              HasSubstr("standin qwen2.5-coder-standin answers: Translate this Python code"));
  EXPECT_THAT(r["results"][1]["model"].get<std::string>(), HasSubstr("llama-3.1-standin"));
  EXPECT_THAT(r["output"].get<std::string>(), HasSubstr("standin"));
  EXPECT_EQ(Records(r["requestId"]).size(), 3u);
}

// A mesh whose router is `router_model`, served by a real worker in front of the stand-in.
void PipelineTest::StartRoutedMesh(const std::string& router_model, std::vector<std::string> extra) {
  std::string error;
  standin_ = StartDaemon("openai_standin", dir_, "standin", {"--models=" + router_model}, &error);
  ASSERT_TRUE(standin_.process) << error;
  extra.push_back("--analyzer_router");
  extra.push_back("--analyzer_router_below=0.6");
  StartCoordinator("127.0.0.1:0", extra);
  StartThreeFamilies();
  std::vector<std::string> args = {"--coordinator=" + coordinator_.address, "--device_id=gpu-router",
                                   "--provider_id=prov-router", "--openai_base_url=" + standin_.address,
                                   "--model=" + router_model, "--family=phi", "--parameters_b=1"};
  for (std::string& a : WorkerSecurityArgs("gpu-router", "prov-router")) args.push_back(std::move(a));
  workers_["gpu-router"] = StartDaemon("loom-worker", dir_, "gpu-router", args, &error);
  ASSERT_TRUE(workers_["gpu-router"].process) << error;
  ASSERT_TRUE(WaitForDevices({"dev-qwen", "dev-llama", "dev-mistral", "gpu-router"}));
}

// A request the classifier is unsure of (factual 0.45, next summarization 0.29, with the model
// of 2026-12-03), under the routed mesh's --analyzer_router_below=0.6.
constexpr char kUnclear[] = "Tell me about the hallway.";

// The plan's reasons of an answered request, one per line.
std::string Reasons(const json& answer) {
  std::string out;
  for (const auto& reason : answer["plan"]["reasons"]) out += reason.get<std::string>() + "\n";
  return out;
}

TEST_F(PipelineTest, ARouterThatNamesNoCategoryIsIgnoredAndNotPaid) {
  // Wrong: the model answers a category that does not exist.
  StartRoutedMesh("router-bogus-standin");
  json r = AskJson(kUnclear);
  EXPECT_THAT(Reasons(r), HasSubstr("reply rejected (category \"bogus\" is not one of the eight)"))
      << Reasons(r);
  EXPECT_FALSE(r["output"].get<std::string>().empty()) << "the request is still answered";
  EXPECT_EQ(RouteRecords(r), 0);
}

TEST_F(PipelineTest, ARouterPastItsDeadlineIsGivenUpOnAndTheRequestGoesOn) {
  // Late: the model keeps the connection open without answering.
  StartRoutedMesh("router-creative-hang-standin", {"--analyzer_router_timeout_ms=300"});
  json r = AskJson(kUnclear);
  EXPECT_THAT(Reasons(r), HasSubstr("DEADLINE_EXCEEDED")) << Reasons(r);
  EXPECT_THAT(Reasons(r), HasSubstr("the classifier's verdict stands")) << Reasons(r);
  EXPECT_FALSE(r["output"].get<std::string>().empty());
  EXPECT_EQ(RouteRecords(r), 0);
}

TEST_F(PipelineTest, AnUnclearRequestIsShownToARouterModelWhoseVerdictIsUsedCachedAndPaid) {
  // A real worker in front of the stand-in answering as a planning model, beside simulated ones.
  StartRoutedMesh("router-creative-standin");

  // The classifier is unsure of this one: the router is asked, and says creative.
  const std::string unclear = kUnclear;
  CommandResult plan = Loom({"--coordinator=" + coordinator_.address, "plan", unclear});
  EXPECT_THAT(plan.out, HasSubstr("a router model is asked")) << plan.out << plan.err;
  json r = AskJson(unclear);
  EXPECT_THAT(Reasons(r), HasSubstr("router model router-creative-standin: creative")) << Reasons(r);
  EXPECT_EQ(r["plan"]["categories"][0]["category"], "TASK_CATEGORY_CREATIVE") << r["plan"].dump();
  EXPECT_EQ(RouteRecords(r), 1);

  // The same prompt again: the cached verdict, no call, nothing paid for routing.
  json again = AskJson(unclear);
  EXPECT_THAT(Reasons(again), HasSubstr("router (cached): creative")) << Reasons(again);
  EXPECT_EQ(RouteRecords(again), 0);

  // A request the classifier is sure of asks nobody.
  json clear = AskJson("Translate 'good morning' into Japanese.");
  for (const auto& reason : clear["plan"]["reasons"]) {
    EXPECT_THAT(reason.get<std::string>(), Not(HasSubstr("router"))) << clear["plan"].dump();
  }
}

}  // namespace
}  // namespace loom::testing
