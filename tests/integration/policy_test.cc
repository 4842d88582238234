// Per-request policies on a real mesh whose devices differ in price, speed, trust and carbon:
// loom-private never reaches a community device (attempts and ledger), loom-cheap pays less
// than loom-auto for the same request, loom-fast takes the fast device, a cost limit that
// nothing meets is refused uncharged, private_only lets the parts without the client's data
// go wider, and a compete run pays its candidates by the configured rule with balanced books.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"
#include "tests/integration/mesh_fixture.h"

namespace loom::testing {
namespace {

using ::testing::HasSubstr;

class PolicyTest : public MeshFixture {
 protected:
  // Three llama devices, one of each tier:
  //   dev-cheap  community, 1,000 micro/1k, 200 tokens/s, 600 g/kWh (declared)
  //   dev-fast   verified,  8,000 micro/1k, 5,000 tokens/s, eu-west, 400 g/kWh (declared)
  //   dev-green  owned,     8,000 micro/1k, 100 tokens/s, eu-north (30 g/kWh from the
  //              operator's table), 13B: loom-auto's choice (ties go to the larger model)
  void StartMesh(std::vector<std::string> coordinator_flags = {}) {
    const std::string config = dir_ + "/policies.json";
    std::ofstream(config) << R"({
      "providerTrust": {"prov-dev-fast": "TRUST_TIER_VERIFIED", "prov-dev-green": "TRUST_TIER_OWNED"},
      "carbonByRegion": {"eu-north": 30},
      "policies": [{"name": "acme-eu", "regions": ["eu-west", "eu-north"]}]
    })";
    coordinator_flags.push_back("--policy_config=" + config);
    StartCoordinator("127.0.0.1:0", coordinator_flags);
    StartWorker("dev-cheap", "llama-cheap",
                {"--family=llama", "--parameters_b=8", "--price_per_1k_micro=1000",
                 "--sim_tokens_per_second=200", "--carbon_g_per_kwh=600"});
    StartWorker("dev-fast", "llama-fast",
                {"--family=llama", "--parameters_b=8", "--price_per_1k_micro=8000",
                 "--sim_tokens_per_second=5000", "--region=eu-west", "--carbon_g_per_kwh=400"});
    StartWorker("dev-green", "llama-green",
                {"--family=llama", "--parameters_b=13", "--price_per_1k_micro=8000",
                 "--sim_tokens_per_second=100", "--region=eu-north"});
    ASSERT_TRUE(WaitForDevices({"dev-cheap", "dev-fast", "dev-green"}));
  }

  std::vector<std::string> Flags(std::vector<std::string> extra) {
    extra.push_back("--max_tokens=20");
    return extra;
  }

  static std::set<std::string> DevicesIn(const json& response) {
    std::set<std::string> out;
    for (const auto& a : response.value("attempts", json::array())) out.insert(a.value("deviceId", ""));
    for (const auto& c : response.value("contributions", json::array())) out.insert(c.value("deviceId", ""));
    return out;
  }

  int64_t Balance(const std::string& account) {
    CommandResult r = RunCommand("loom-ledger", {"--db=" + db_, "balance", account, "--format=json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json j = json::parse(r.out, nullptr, false);
    if (j.is_array() && !j.empty()) j = j[0];
    return JsonInt64(j, "balanceMicro");
  }
};

TEST_F(PolicyTest, DevicesCarryTheirRegionCarbonAndTheOperatorsTrust) {
  StartMesh();
  CommandResult r = Loom({"--coordinator=" + coordinator_.address, "--api_key=" + observer_key_,
                          "devices", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> by_id;
  const json listed = json::parse(r.out);  // kept: a loop over a temporary's field dangles
  for (const auto& d : listed["devices"]) by_id[d.value("deviceId", "")] = d;
  ASSERT_EQ(by_id.size(), 3u) << r.out;
  EXPECT_EQ(by_id["dev-cheap"].value("trust", ""), "TRUST_TIER_COMMUNITY");
  EXPECT_EQ(by_id["dev-fast"].value("trust", ""), "TRUST_TIER_VERIFIED");
  EXPECT_EQ(by_id["dev-green"].value("trust", ""), "TRUST_TIER_OWNED");
  EXPECT_EQ(by_id["dev-fast"].value("region", ""), "eu-west");
  EXPECT_DOUBLE_EQ(by_id["dev-cheap"].value("carbonGPerKwh", 0.0), 600);
  EXPECT_DOUBLE_EQ(by_id["dev-green"].value("carbonGPerKwh", 0.0), 30);  // the operator's table
}

TEST_F(PolicyTest, PrivateNeverTouchesACommunityDeviceInAnyPlanKind) {
  StartMesh();
  std::vector<std::string> ids;
  for (const auto& [prompt, mode] : std::vector<std::pair<std::string, std::string>>{
           {"What is the capital of Peru?", ""},
           {"Write a haiku about rain. Then translate it into French.", "compiled"},
           {"Name a prime number above 100.", "compete"},
           {"Summarize: the meeting moved to Tuesday.", ""}}) {
    std::vector<std::string> flags = Flags({"--policy=loom-private"});
    if (!mode.empty()) flags.push_back("--mode=" + mode);
    json r = AskJson(prompt, flags);
    ASSERT_TRUE(r.contains("requestId")) << r.dump();
    const std::set<std::string> used = DevicesIn(r);
    EXPECT_FALSE(used.empty());
    EXPECT_FALSE(used.count("dev-cheap")) << prompt << ": " << r.dump();
    EXPECT_EQ(r["policy"].value("name", ""), "loom-private");
    EXPECT_THAT(r["policy"]["limits"].dump(), HasSubstr("trust >= verified"));
    ids.push_back(r["requestId"]);
  }
  // The ledger agrees: no record of these requests pays the community device.
  for (const std::string& id : ids) {
    json records = LedgerRecords(id);
    ASSERT_TRUE(records.is_array() && !records.empty()) << id;
    for (const auto& rec : records) EXPECT_NE(rec.value("deviceId", ""), "dev-cheap") << id;
  }
}

TEST_F(PolicyTest, CheapPaysLessThanAutoAndFastTakesTheFastDevice) {
  StartMesh();
  const std::string prompt = "Tell me one fact about owls.";
  json automatic = AskJson(prompt, Flags({"--policy=loom-auto"}));
  json cheap = AskJson(prompt, Flags({"--policy=loom-cheap"}));
  json fast = AskJson(prompt, Flags({"--model=loom-fast"}));  // a policy as a model name
  ASSERT_TRUE(automatic.contains("costMicro") && cheap.contains("costMicro")) << cheap.dump();
  EXPECT_EQ(DevicesIn(automatic), std::set<std::string>{"dev-green"});
  EXPECT_EQ(DevicesIn(cheap), std::set<std::string>{"dev-cheap"});
  EXPECT_EQ(DevicesIn(fast), std::set<std::string>{"dev-fast"}) << fast.dump();
  EXPECT_LT(std::stoll(cheap["costMicro"].get<std::string>()),
            std::stoll(automatic["costMicro"].get<std::string>()));
  // The receipt compares: auto paid the best-affinity price, above the cheapest allowed.
  const json& p = automatic["policy"];
  EXPECT_GT(std::stoll(p.value("paidMicro", "0")), std::stoll(p.value("cheapestMicro", "0")));
  EXPECT_EQ(p.value("paidMicro", ""), p.value("bestAffinityMicro", ""));
  EXPECT_GT(p.value("carbonG", 0.0), 0.0);  // dev-green's power is known (30 g/kWh)
}

TEST_F(PolicyTest, LimitsNoDeviceMeetsAreRefusedWithTheLimitNamedAndNothingCharged) {
  StartMesh();
  const int64_t before = Balance("client:anonymous");
  HttpResult r = Curl("POST", "/v1/chat/completions",
                      R"({"model": "loom-auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}],
                          "loom": {"policy": {"regions": ["ap-south"]}}})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_THAT(r.body, HasSubstr("policy_unsatisfiable"));
  EXPECT_THAT(r.body, HasSubstr("region in [ap-south] left out 3 device(s)"));
  EXPECT_THAT(r.headers, HasSubstr("x-should-retry: false"));
  // A cost limit below the cheapest bound: refused before anything runs.
  r = Curl("POST", "/v1/chat/completions",
           R"({"model": "loom-auto", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}],
               "loom": {"policy": {"max_cost": 0.00001}}})");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_THAT(r.body, HasSubstr("cost <= 0.000010 credits"));
  // A bad field is a 400 naming it.
  r = Curl("POST", "/v1/chat/completions",
           R"({"model": "loom-auto", "messages": [{"role": "user", "content": "hi"}],
               "loom": {"policy": {"trust": "friends"}}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.body, HasSubstr("loom.policy.trust"));
  EXPECT_EQ(Balance("client:anonymous"), before);
  // A cost limit only the cheap device meets: served there, within the limit.
  json fits = AskJson("Tell me one fact about owls.", Flags({"--max_cost=0.0001"}));
  EXPECT_EQ(DevicesIn(fits), std::set<std::string>{"dev-cheap"}) << fits.dump();
  EXPECT_LE(std::stoll(fits["costMicro"].get<std::string>()), 100);
}

TEST_F(PolicyTest, PrivateOnlyLetsThePartsWithoutTheClientsDataGoWider) {
  StartMesh();
  json r = AskJson(
      "Write a haiku about autumn leaves. Also draft a short reply to jane.doe@example.org "
      "confirming that her invoice was paid.",
      Flags({"--policy=loom-private", "--private_only", "--weights=quality=1,cost=2",
             "--mode=compiled"}));
  ASSERT_TRUE(r.contains("plan")) << r.dump();
  const json& tasks = r["plan"]["subTasks"];
  ASSERT_EQ(tasks.size(), 2u) << r["plan"].dump();
  std::map<std::string, bool> is_private;
  for (const auto& t : tasks) is_private[t["id"]] = t.value("privateData", false);
  int private_count = 0;
  for (const auto& [id, p] : is_private) private_count += p;
  EXPECT_EQ(private_count, 1) << tasks.dump();
  for (const auto& res : r["results"]) {
    const std::string device = res.value("deviceId", "");
    if (is_private[res["subTaskId"]]) {
      EXPECT_NE(device, "dev-cheap") << "the e-mail part went to a community device";
    } else {
      EXPECT_EQ(device, "dev-cheap") << "the haiku may go wider, and cost prefers dev-cheap";
    }
  }
  // The synthesis sees every part: it is bound as well.
  for (const auto& c : r["contributions"]) {
    if (c.value("role", "") == "CONTRIBUTION_ROLE_SYNTHESIZE") {
      EXPECT_NE(c.value("deviceId", ""), "dev-cheap");
    }
  }
  EXPECT_THAT(r["policy"]["applied"].dump(), HasSubstr("no private data: trust and region not applied"));
}

TEST_F(PolicyTest, CompetePaysTheWinnerInFullAndTheOthersTheirShare) {
  StartMesh({"--compete_participant_share=0.25"});
  json r = AskJson("Name a prime number above 100.", Flags({"--mode=compete"}));
  ASSERT_TRUE(r.contains("compete")) << r.dump();
  EXPECT_THAT(r["compete"].value("payoutRule", ""), HasSubstr("25%"));
  const std::string winner = r["compete"]["winnerSubTaskId"];
  const std::map<std::string, int64_t> price = {
      {"llama-cheap", 1000}, {"llama-fast", 8000}, {"llama-green", 8000}};
  int64_t total = 0;
  int others = 0;
  for (const auto& c : r["contributions"]) {
    const int64_t tokens = std::stoll(c.value("tokenCount", "0"));
    const int64_t credits = std::stoll(c.value("creditsMicro", "0"));
    const int64_t full = CreditsForTokens(tokens, price.at(c["model"]));
    if (c["subTaskId"] == winner) {
      EXPECT_EQ(credits, full);
      EXPECT_TRUE(c.value("inAnswer", false));
    } else {
      EXPECT_EQ(credits, full / 4) << c.dump();  // floor(full x 0.25)
      ++others;
    }
    total += credits;
  }
  EXPECT_EQ(others, 2);
  EXPECT_EQ(std::stoll(r["costMicro"].get<std::string>()), total);
  // loom-ledger records shows which candidate won.
  CommandResult records = RunCommand(
      "loom-ledger", {"--db=" + db_, "records", "--request=" + r["requestId"].get<std::string>()});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  EXPECT_THAT(records.out, HasSubstr("compete (winner)"));
  EXPECT_THAT(records.out, HasSubstr("compete (participant)"));
  // The books balance: what the client paid is what the providers earned; verify passes.
  CommandResult verify = RunCommand("loom-ledger", {"--db=" + db_, "verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  int64_t earned = 0;
  for (const char* p : {"provider:prov-dev-cheap", "provider:prov-dev-fast", "provider:prov-dev-green"}) {
    earned += std::max<int64_t>(0, Balance(p));
  }
  EXPECT_EQ(earned, total);
}

}  // namespace
}  // namespace loom::testing
