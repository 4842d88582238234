// The web console (issue 20) against a real mesh of simulated devices: its JSON endpoints and
// who may read what (curl), then the page itself in headless Chromium driven by puppeteer-core
// (tests/clients/console_browser.mjs, pinned in tests/clients/package-lock.json): the device
// list, a compiled request's plan drawn as a graph, markup in a prompt shown as text, one
// client kept from another's requests, and a killed worker turning suspect and going without a
// reload. LOOM_CONSOLE_SCREENSHOTS=DIR keeps a screenshot of each view (the README's).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;

class ConsoleTest : public MeshFixture {
 protected:
  void SetUp() override {
    MeshFixture::SetUp();
    operator_key_ = "op-" + std::string(32, 'k') + "-test";
    std::ofstream(dir_ + "/operator.key") << operator_key_ << "\n";
    // Heartbeats every second, removed after four missed: a killed worker stays suspect long
    // enough for the page (polling every second) to show it.
    StartCoordinator("127.0.0.1:0", {"--allow_anonymous=", "--console_operator_key_file=" + dir_ + "/operator.key",
                                     "--heartbeat_interval_ms=1000", "--missed_heartbeats=4"});
    StartWorker("dev-a", "llama-3.1-8b");
    StartWorker("dev-b", "qwen2.5-coder-7b");
    StartWorker("dev-c", "mistral-7b");
    ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b", "dev-c"}));
    alice_ = NewKey("--client=alice");
    bob_ = NewKey("--client=bob");
    provider_ = NewKey("--provider=prov-dev-a");
    for (const char* c : {"client:alice", "client:bob"}) {
      ASSERT_EQ(RunCommand("loom-ledger", {"--db=" + db_, "grant", c, "10", absl::StrCat("--reference=", c)})
                    .exit_code,
                0);
    }
  }

  std::string NewKey(const std::string& who) {
    CommandResult key = RunCommand("loom-ledger", {"--db=" + db_, "keys", "create", who});
    EXPECT_EQ(key.exit_code, 0) << key.err;
    return std::string(absl::StripAsciiWhitespace(key.out));
  }

  struct Http {
    int status = 0;
    std::string headers, body;
  };
  Http Call(const std::string& method, const std::string& path, const std::string& key,
            const std::string& body = "", std::vector<std::string> extra = {}) {
    // Files of their own: calls may come from several threads.
    const std::string tag = absl::StrCat(calls_++);
    std::vector<std::string> args = {"-s", "-D", dir_ + "/headers-" + tag, "-X", method,
                                     "http://" + coordinator_.http + path};
    if (!key.empty()) args.insert(args.end(), {"-H", "Authorization: Bearer " + key});
    if (!body.empty()) {
      std::ofstream(dir_ + "/body-" + tag + ".json") << body;
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary",
                               "@" + dir_ + "/body-" + tag + ".json"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = RunCommand("/usr/bin/curl", args);
    Http out;
    out.body = r.out;
    out.headers = ReadFile(dir_ + "/headers-" + tag);
    if (out.headers.size() > 12) out.status = std::atoi(out.headers.substr(9, 3).c_str());
    return out;
  }
  // `expect` 0: any status.
  json Get(const std::string& path, const std::string& key, int expect = 200) {
    Http r = Call("GET", path, key);
    if (expect != 0) {
      EXPECT_EQ(r.status, expect) << path << ": " << r.body;
    }
    return json::parse(r.body, nullptr, false);
  }
  json Chat(const std::string& key, const std::string& id, const std::string& prompt,
            const std::string& model = "loom-auto", const std::string& mode = "") {
    json body = {{"model", model}, {"messages", {{{"role", "user"}, {"content", prompt}}}}};
    if (!mode.empty()) body["loom"] = {{"mode", mode}};
    Http r = Call("POST", "/v1/chat/completions", key, body.dump(), {"-H", "X-Request-Id: " + id});
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false);
  }

  // Runs one phase of the browser script; `during` runs while it does (once it signals).
  CommandResult Browser(const std::string& phase, const std::map<std::string, std::string>& env) {
    std::vector<std::string> args = {"LOOM_CONSOLE=http://" + coordinator_.http + "/console/",
                                     "LOOM_OPERATOR_KEY=" + operator_key_, "LOOM_ALICE_KEY=" + alice_,
                                     "LOOM_BOB_KEY=" + bob_, "LOOM_PROVIDER_KEY=" + provider_};
    if (const char* shots = std::getenv("LOOM_CONSOLE_SCREENSHOTS")) {
      args.push_back(std::string("LOOM_SCREENSHOTS=") + shots);
    }
    for (const auto& [k, v] : env) args.push_back(k + "=" + v);
    args.insert(args.end(), {"node", std::string(LOOM_SOURCE_DIR) + "/tests/clients/console_browser.mjs", phase});
    return RunCommand("/usr/bin/env", args, absl::Seconds(120));
  }

  std::string operator_key_, alice_, bob_, provider_;
  std::atomic<int> calls_{0};
};

TEST_F(ConsoleTest, TheJsonEndpointsShowEachViewerWhatIsTheirsOnly) {
  Http page = Call("GET", "/console/", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.headers, HasSubstr("Content-Type: text/html"));
  EXPECT_THAT(page.headers, HasSubstr("Content-Security-Policy: default-src 'none'; script-src 'self'"));
  EXPECT_THAT(page.body, HasSubstr("<title>Loom console</title>"));
  EXPECT_EQ(Call("GET", "/console/console.js", "").status, 200);
  EXPECT_EQ(Call("GET", "/console/nothing.js", "").status, 404);
  Http bare = Call("GET", "/console", "");
  EXPECT_EQ(bare.status, 308);
  EXPECT_THAT(bare.headers, HasSubstr("Location: /console/"));

  // No anonymous access without --allow_anonymous; a wrong key is nobody.
  EXPECT_EQ(Call("GET", "/console/api/whoami", "").status, 401);
  EXPECT_EQ(Call("GET", "/console/api/mesh", "loom_wrong").status, 401);
  EXPECT_EQ(Get("/console/api/whoami", operator_key_)["role"], "operator");
  EXPECT_EQ(Get("/console/api/whoami", alice_)["name"], "alice");
  EXPECT_EQ(Get("/console/api/whoami", provider_)["role"], "provider");

  json mesh = Get("/console/api/mesh", alice_);
  ASSERT_EQ(mesh["devices"].size(), 3u);
  EXPECT_FALSE(mesh["devices"][0].contains("address")) << "where devices listen is not shown";

  Chat(alice_, "alice-1", "What is the capital of Peru?");
  Chat(bob_, "bob-1", "Who wrote Hamlet?", "llama-3.1-8b");
  json all = Get("/console/api/requests", operator_key_);
  ASSERT_EQ(all["requests"].size(), 2u) << all.dump();
  EXPECT_EQ(all["requests"][0]["displayId"], "bob-1") << "newest first";
  EXPECT_EQ(all["requests"][0]["outcome"], "ok");
  EXPECT_GT(all["requests"][0]["costMicro"].get<int64_t>(), 0);
  json mine = Get("/console/api/requests", alice_);
  ASSERT_EQ(mine["requests"].size(), 1u);
  EXPECT_EQ(mine["requests"][0]["id"], "client:alice/alice-1");
  json one = Get("/console/api/requests/client%3Aalice%2Falice-1", alice_);
  EXPECT_EQ(one["response"]["plan"]["kind"], "PLAN_KIND_PASSTHROUGH");
  EXPECT_FALSE(one["response"]["contributions"].empty());
  Get("/console/api/requests/client%3Aalice%2Falice-1", bob_, 404);
  Get("/console/api/requests", provider_, 403);

  // Money: the operator's books, a client's balance, a provider's own earnings.
  json money = Get("/console/api/money", operator_key_);
  EXPECT_GE(money["payouts"].size(), 1u);
  EXPECT_FALSE(money["accounts"].empty());
  EXPECT_FALSE(money["recentRecords"].empty());
  json balance = Get("/console/api/money", bob_);
  EXPECT_LT(balance["balanceMicro"].get<int64_t>(), 10'000'000);
  EXPECT_EQ(balance["availableMicro"], balance["balanceMicro"]);
  json earnings = Get("/console/api/money", provider_);
  ASSERT_EQ(earnings["payouts"].size(), 1u);
  EXPECT_EQ(earnings["payouts"][0]["provider"], "prov-dev-a");
  Http csv = Call("GET", "/console/api/payouts.csv", operator_key_);
  EXPECT_EQ(csv.status, 200);
  EXPECT_THAT(csv.body, HasSubstr("provider,earned_credits,"));
  EXPECT_THAT(csv.body, HasSubstr("prov-dev-a,"));
  EXPECT_EQ(Call("GET", "/console/api/payouts.csv", alice_).status, 403);
  EXPECT_EQ(Get("/console/api/verify", operator_key_)["ok"], true);
  EXPECT_EQ(Call("GET", "/console/api/verify", alice_).status, 403);

  json plan = json::parse(Call("POST", "/console/api/explain", alice_,
                               R"({"prompt": "1. Write a haiku. 2. Translate it into French.", "mode": "compiled"})")
                              .body);
  EXPECT_EQ(plan["plan"]["kind"], "PLAN_KIND_COMPILED") << plan.dump();
  EXPECT_EQ(Call("POST", "/console/api/explain", alice_, R"({"prompt": 7})").status, 400);
  json affinities = Get("/console/api/affinities", alice_);
  EXPECT_FALSE(affinities["affinities"].empty());
  EXPECT_EQ(affinities["categories"].size(), 8u);
}

// A unary request shows its plan while it runs (a slow device: 60 tokens at 20 a second),
// then its attempts and cost when it ends.
TEST_F(ConsoleTest, ARunningRequestShowsItsPlanBeforeItEnds) {
  StartWorker("dev-slow", "phi-3-mini", {"--sim_tokens_per_second=20", "--sim_output_tokens=60"});
  ASSERT_TRUE(WaitForDevices({"dev-a", "dev-b", "dev-c", "dev-slow"}));
  std::thread client([&] { Chat(alice_, "alice-slow", "Tell me a long story.", "phi-3-mini"); });
  json seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        seen = Get("/console/api/requests/client%3Aalice%2Falice-slow", alice_, 0);
        return seen.is_object() && seen.value("running", false) && seen.value("planKind", "") == "passthrough";
      },
      absl::Seconds(20)))
      << seen.dump();
  EXPECT_TRUE(seen["response"]["attempts"].empty()) << "its one attempt has not ended yet";
  client.join();
  json done = Get("/console/api/requests/client%3Aalice%2Falice-slow", alice_);
  EXPECT_FALSE(done["running"].get<bool>());
  EXPECT_EQ(done["outcome"], "ok");
  EXPECT_EQ(done["response"]["attempts"].size(), 1u);
  EXPECT_GT(done["costMicro"].get<int64_t>(), 0);
}

TEST_F(ConsoleTest, TheConsoleInARealBrowser) {
  ASSERT_EQ(access("/usr/bin/chromium", X_OK), 0) << "chromium is not installed: run deploy/setup.sh";
  ASSERT_FALSE(ReadFile(std::string(LOOM_SOURCE_DIR) + "/tests/clients/node_modules/puppeteer-core/package.json")
                   .empty())
      << "puppeteer-core is not installed: run deploy/setup.sh";
  CommandResult mesh = Browser("mesh", {});
  std::cout << mesh.out << mesh.err;
  EXPECT_EQ(mesh.exit_code, 0);

  // A compiled request of three parts, one depending on another; its plan as the client got it
  // is what the page must draw.
  json compiled = Chat(alice_, "alice-compiled",
                       "1. Write a Python function that reverses a string. 2. Summarize the causes of "
                       "the French Revolution. 3. Then translate that summary into French.",
                       "loom-auto", "compiled");
  const json& parts = compiled["loom"]["sub_tasks"];
  ASSERT_GE(parts.size(), 2u) << compiled.dump();
  json expect = {{"nodes", json::array()}, {"edges", json::array()}, {"categories", json::array()}};
  std::set<std::string> depended;
  for (const auto& t : parts) {
    expect["nodes"].push_back(t["id"]);
    expect["categories"].push_back(t["category"]);
    for (const auto& d : t["depends_on"]) {
      expect["edges"].push_back(d.get<std::string>() + ">" + t["id"].get<std::string>());
      depended.insert(d.get<std::string>());
    }
  }
  expect["nodes"].push_back("synthesis");
  for (const auto& t : parts) {
    if (!depended.count(t["id"].get<std::string>())) {
      expect["edges"].push_back(t["id"].get<std::string>() + ">synthesis");
    }
  }
  ASSERT_LT(depended.size(), parts.size());
  ASSERT_GT(depended.size(), 0u) << "the translation depends on the summary: " << compiled.dump();
  Chat(alice_, "alice-xss",
       "Repeat this: <script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">");
  Chat(bob_, "bob-1", "Who wrote Hamlet?", "llama-3.1-8b");
  json compete = Chat(alice_, "alice-compete", "What is the capital of Peru?", "loom-auto", "compete");
  ASSERT_EQ(compete["loom"]["plan_kind"], "compete") << compete.dump();

  CommandResult requests = Browser("requests", {{"LOOM_COMPILED_ID", "client:alice/alice-compiled"},
                                                {"LOOM_COMPETE_ID", "client:alice/alice-compete"},
                                                {"LOOM_XSS_ID", "client:alice/alice-xss"},
                                                {"LOOM_EXPECT", expect.dump()}});
  std::cout << requests.out << requests.err;
  EXPECT_EQ(requests.exit_code, 0);

  CommandResult isolation = Browser("isolation", {{"LOOM_COMPILED_ID", "client:alice/alice-compiled"}});
  std::cout << isolation.out << isolation.err;
  EXPECT_EQ(isolation.exit_code, 0);

  // The page is open on the mesh when dev-c is killed: it turns suspect, then goes.
  const std::string signal = dir_ + "/kill-now";
  std::vector<std::string> args = {"LOOM_CONSOLE=http://" + coordinator_.http + "/console/",
                                   "LOOM_OPERATOR_KEY=" + operator_key_, "LOOM_SIGNAL=" + signal};
  if (const char* shots = std::getenv("LOOM_CONSOLE_SCREENSHOTS")) {
    args.push_back(std::string("LOOM_SCREENSHOTS=") + shots);
  }
  args.insert(args.end(), {"node", std::string(LOOM_SOURCE_DIR) + "/tests/clients/console_browser.mjs", "suspect"});
  auto browser = Spawn("/usr/bin/env", args, dir_ + "/suspect.log");
  ASSERT_NE(browser, nullptr);
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(signal).empty() || !browser->running() ||
                                   browser->Wait(absl::ZeroDuration()) != -1; },
                      absl::Seconds(60)))
      << browser->Log();
  workers_["dev-c"].process->Signal(SIGKILL);
  const int status = browser->Wait(absl::Seconds(90));
  std::cout << browser->Log();
  EXPECT_EQ(status, 0) << "the suspect phase failed";
}

}  // namespace
}  // namespace loom::testing
