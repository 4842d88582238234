// The selector under a request's policy: every hard limit leaves out exactly the devices it
// should, soft weights move the choice the way they say, ties stay deterministic, and a policy
// no device meets fails with the limit named.
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

struct Spec {
  std::string id;
  std::string model = "llama-3.1-8b";
  int64_t price = 0;  // micro-credits per 1k; 0: by size
  v1::TrustTier trust = v1::TRUST_TIER_COMMUNITY;
  std::string region;
  double tokens_per_s = 0;
  double ttft_ms = 0;
  double carbon = 0;
  int active = 0;
};

v1::DeviceInfo Device(const Spec& s) {
  v1::DeviceInfo d;
  d.set_device_id(s.id);
  d.set_provider_id("p-" + s.id);
  d.set_address(s.id + ":1");
  d.set_state(v1::DEVICE_STATE_HEALTHY);
  v1::ModelInfo* m = d.add_models();
  m->set_name(s.model);
  m->set_family("llama");
  m->set_parameters_b(8);
  m->set_price_per_1k_micro(s.price);
  d.mutable_load()->set_max_concurrency(4);
  d.mutable_load()->set_active(s.active);
  d.mutable_load()->set_tokens_per_second(s.tokens_per_s);
  d.set_trust(s.trust);
  d.set_region(s.region);
  d.set_observed_ttft_ms(s.ttft_ms);
  d.set_carbon_g_per_kwh(s.carbon);
  return d;
}

// One device per limit, each failing only that limit, and one that passes them all.
std::vector<v1::DeviceInfo> Mesh() {
  const Spec good{.id = "good", .model = "m-good", .price = 5000, .trust = v1::TRUST_TIER_OWNED,
                  .region = "eu-west", .tokens_per_s = 50, .ttft_ms = 100};
  Spec dear = good, community = good, far = good, slow = good, laggy = good;
  dear.id = "dear", dear.model = "m-dear", dear.price = 50'000;
  community.id = "community", community.model = "m-community", community.trust = v1::TRUST_TIER_COMMUNITY;
  far.id = "far", far.model = "m-far", far.region = "us-east";
  slow.id = "slow", slow.model = "m-slow", slow.tokens_per_s = 5;
  laggy.id = "laggy", laggy.model = "m-laggy", laggy.ttft_ms = 2000;
  return {Device(good), Device(dear), Device(community), Device(far), Device(slow), Device(laggy)};
}

SelectionPolicy AllLimits() {
  SelectionPolicy p;
  p.name = "strict";
  p.max_price_per_1k_micro = 10'000;
  p.min_trust = v1::TRUST_TIER_VERIFIED;
  p.regions = {"eu-central", "eu-west"};
  p.min_tokens_per_s = 20;
  p.max_ttft_ms = 500;
  return p;
}

TEST(SelectionPolicyTest, EveryLimitLeavesOutExactlyTheDevicesThatFailIt) {
  ModelSelector selector;
  const auto mesh = Mesh();
  const SelectionPolicy all = AllLimits();
  auto s = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &all);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->device_id, "good");
  EXPECT_THAT(s->reason, HasSubstr("policy strict"));
  EXPECT_THAT(s->reason, HasSubstr("trust >= verified left out 1 device(s)"));
  // Each limit alone: exactly its device is left out, the others stay candidates.
  const std::vector<std::pair<std::string, SelectionPolicy>> one_each = [] {
    std::vector<std::pair<std::string, SelectionPolicy>> out;
    SelectionPolicy p;
    p.max_price_per_1k_micro = 10'000;
    out.emplace_back("dear", p);
    p = {};
    p.min_trust = v1::TRUST_TIER_VERIFIED;
    out.emplace_back("community", p);
    p = {};
    p.regions = {"eu-west"};
    out.emplace_back("far", p);
    p = {};
    p.min_tokens_per_s = 20;
    out.emplace_back("slow", p);
    p = {};
    p.max_ttft_ms = 500;
    out.emplace_back("laggy", p);
    return out;
  }();
  for (const auto& [left_out, policy] : one_each) {
    std::set<std::string> chosen;
    std::set<std::string> excluded;
    // Draw every candidate in turn by excluding the ones already chosen.
    for (int i = 0; i < 6; ++i) {
      auto pick = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, excluded, &policy);
      if (!pick.ok()) break;
      chosen.insert(pick->device_id);
      excluded.insert(pick->device_id);
    }
    EXPECT_EQ(chosen.size(), 5u) << left_out;
    EXPECT_FALSE(chosen.count(left_out)) << left_out;
  }
}

TEST(SelectionPolicyTest, AnUnknownFigureFailsItsLimit) {
  ModelSelector selector;
  std::vector<v1::DeviceInfo> mesh = {Device({.id = "new"})};  // no speed, no ttft measured
  SelectionPolicy speed;
  speed.min_tokens_per_s = 1;
  SelectionPolicy ttft;
  ttft.max_ttft_ms = 10'000;
  EXPECT_TRUE(IsPolicyUnmet(
      selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &speed).status()));
  EXPECT_TRUE(IsPolicyUnmet(
      selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &ttft).status()));
}

TEST(SelectionPolicyTest, AnImpossiblePolicyFailsNamingEachLimit) {
  ModelSelector selector;
  const auto mesh = Mesh();
  SelectionPolicy p = AllLimits();
  p.regions = {"ap-south"};
  auto s = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_CODE}, {}, &p);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(IsPolicyUnmet(s.status())) << s.status();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(s.status().message());
  EXPECT_THAT(message, HasSubstr("no device meets the policy strict"));
  EXPECT_THAT(message, HasSubstr("price <= 0.010000 credits/1k tokens left out 1 device(s)"));
  EXPECT_THAT(message, HasSubstr("trust >= verified left out 1 device(s) (community)"));
  EXPECT_THAT(message, HasSubstr("region in [ap-south] left out 4 device(s) (good, far, slow, ...)"));
  EXPECT_THAT(message, HasSubstr("(model m-dear)"));
  EXPECT_THAT(message, HasSubstr("nothing was charged"));
  // Passthrough and compete say the same.
  auto pinned = selector.SelectPassthrough(mesh, {"m-good", "", {}}, {}, &p);
  EXPECT_TRUE(IsPolicyUnmet(pinned.status())) << pinned.status();
  EXPECT_TRUE(selector.RankDistinctModels(mesh, v1::TASK_CATEGORY_CODE, 3, &p).empty());
  // Failures, not the policy, left none: the old error.
  auto retried = selector.SelectForCategories(
      mesh, {v1::TASK_CATEGORY_CODE}, {"good", "dear", "community", "far", "slow", "laggy"}, &p);
  EXPECT_EQ(retried.status().code(), absl::StatusCode::kUnavailable);
}

TEST(SelectionPolicyTest, WeightsMoveTheChoiceAndQualityAloneChangesNothing) {
  ModelSelector selector;
  // Same affinity (one family); they differ in price, speed and carbon only.
  std::vector<v1::DeviceInfo> mesh = {
      Device({.id = "a-cheap", .model = "cheap", .price = 1000, .tokens_per_s = 10, .carbon = 600}),
      Device({.id = "b-fast", .model = "fast", .price = 9000, .tokens_per_s = 90, .ttft_ms = 50, .carbon = 500}),
      Device({.id = "c-green", .model = "green", .price = 9000, .tokens_per_s = 10, .carbon = 20})};
  mesh[0].set_observed_ttft_ms(900);
  mesh[2].set_observed_ttft_ms(900);
  auto pick = [&](std::array<double, 4> w) {
    SelectionPolicy p;
    p.weights = w;
    auto s = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &p);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->device_id : "";
  };
  EXPECT_EQ(pick({1.0 / 3, 2.0 / 3, 0, 0}), "a-cheap");
  EXPECT_EQ(pick({1.0 / 3, 0, 2.0 / 3, 0}), "b-fast");
  EXPECT_EQ(pick({1.0 / 3, 0, 0, 2.0 / 3}), "c-green");
  // Quality alone is the selector without a policy: equal scores, ties to the lower id.
  auto plain = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(pick({1, 0, 0, 0}), plain->device_id);
  // The receipt's alternatives: the cheapest the limits allowed, and the best affinity's.
  SelectionPolicy green;
  green.weights = {1.0 / 3, 0, 0, 2.0 / 3};
  auto s = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &green);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->cheapest_price_per_1k_micro, 1000);
  EXPECT_DOUBLE_EQ(s->carbon_g_per_kwh, 20);
  EXPECT_THAT(s->reason, HasSubstr("carbon 1.00"));
}

TEST(SelectionPolicyTest, TiesAreDeterministicUnderWeights) {
  ModelSelector selector;
  std::vector<v1::DeviceInfo> mesh;
  for (const char* id : {"d3", "d1", "d2"}) mesh.push_back(Device({.id = id, .tokens_per_s = 30}));
  SelectionPolicy p;
  p.weights = {0.5, 0, 0.5, 0};
  for (int i = 0; i < 5; ++i) {
    auto s = selector.SelectForCategories(mesh, {v1::TASK_CATEGORY_GENERAL}, {}, &p);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->device_id, "d1");
  }
}

TEST(SelectionPolicyTest, PassthroughKeepsItsModelAndHonoursLimitsAndWeights) {
  ModelSelector selector;
  std::vector<v1::DeviceInfo> mesh = {
      Device({.id = "x-idle-dirty", .carbon = 700, .active = 0}),
      Device({.id = "y-busy-green", .carbon = 30, .active = 1}),
      Device({.id = "z-untrusted", .trust = v1::TRUST_TIER_COMMUNITY})};
  mesh[0].set_trust(v1::TRUST_TIER_VERIFIED);
  mesh[1].set_trust(v1::TRUST_TIER_VERIFIED);
  SelectionPolicy trusted;
  trusted.min_trust = v1::TRUST_TIER_VERIFIED;
  auto s = selector.SelectPassthrough(mesh, {"llama-3.1-8b", "", {}}, {}, &trusted);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->device_id, "x-idle-dirty");  // least loaded of the trusted
  trusted.weights = {0, 0, 0, 1};
  s = selector.SelectPassthrough(mesh, {"llama-3.1-8b", "", {}}, {}, &trusted);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->device_id, "y-busy-green");
  EXPECT_THAT(s->reason, HasSubstr("by the policy's weights"));
}

TEST(PolicyBookTest, NamedPoliciesResolveAndTheRequestOverridesThem) {
  PolicyBook book;
  for (const char* name : {"loom-auto", "loom-fast", "loom-cheap", "loom-green", "loom-private"}) {
    EXPECT_TRUE(book.IsNamed(name)) << name;
  }
  v1::CompleteRequest r;
  r.set_model("loom-private");
  auto p = book.Resolve(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "loom-private");
  EXPECT_EQ(p->all.min_trust, v1::TRUST_TIER_VERIFIED);
  EXPECT_EQ(p->wide.min_trust, v1::TRUST_TIER_VERIFIED);  // not private_only: binds every call
  r.mutable_policy()->set_private_only(true);
  r.mutable_policy()->add_regions("eu-west");
  r.mutable_policy()->set_max_cost_micro(50'000);
  p = book.Resolve(r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->wide.min_trust, v1::TRUST_TIER_UNSPECIFIED);
  EXPECT_TRUE(p->wide.regions.empty());
  EXPECT_EQ(p->all.regions, std::vector<std::string>{"eu-west"});
  EXPECT_EQ(p->max_cost_micro, 50'000);
  EXPECT_THAT(p->LimitTexts(), testing::Contains("cost <= 0.050000 credits"));

  v1::CompleteRequest fast;
  fast.mutable_policy()->set_name("loom-fast");
  p = book.Resolve(fast);
  ASSERT_TRUE(p.ok());
  EXPECT_NEAR(p->all.weights[2], 2.0 / 3, 1e-9);
  EXPECT_TRUE(p->all.Soft());
  v1::CompleteRequest plain;
  p = book.Resolve(plain);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "loom-auto");
  EXPECT_FALSE(p->all.Soft());
  EXPECT_FALSE(p->HasLimits());
}

TEST(PolicyBookTest, BadPoliciesAreRefusedNamingTheField) {
  PolicyBook book;
  auto refused = [&](auto edit, const char* field) {
    v1::CompleteRequest r;
    edit(r.mutable_policy());
    auto p = book.Resolve(r);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(p.status().message(), HasSubstr(field));
  };
  refused([](v1::Policy* p) { p->set_name("loom-turbo"); }, "unknown policy 'loom-turbo'");
  refused([](v1::Policy* p) { p->set_max_price_per_1k_micro(0); }, "loom.policy.max_price_per_1k");
  refused([](v1::Policy* p) { p->set_max_cost_micro(-5); }, "loom.policy.max_cost");
  refused([](v1::Policy* p) { p->set_min_tokens_per_s(-1); }, "loom.policy.min_tokens_per_s");
  refused([](v1::Policy* p) { p->set_max_ttft_ms(0); }, "loom.policy.max_ttft_ms");
  refused([](v1::Policy* p) { p->add_regions("EU West"); }, "loom.policy.regions");
  refused([](v1::Policy* p) { p->mutable_weights()->set_cost(-1); }, "loom.policy.weights");
  refused([](v1::Policy* p) { p->mutable_weights(); }, "not all zero");

  v1::PolicyConfig config;
  (*config.mutable_provider_trust())["alice"] = v1::TRUST_TIER_UNSPECIFIED;
  EXPECT_FALSE(PolicyBook::FromConfig(config).ok());
  config.clear_provider_trust();
  (*config.mutable_carbon_by_region())["eu-west"] = 5000;
  EXPECT_FALSE(PolicyBook::FromConfig(config).ok());
  config.clear_carbon_by_region();
  v1::Policy* mine = config.add_policies();
  mine->set_name("acme-eu");
  mine->add_regions("eu-west");
  auto custom = PolicyBook::FromConfig(config);
  ASSERT_TRUE(custom.ok()) << custom.status();
  EXPECT_TRUE(custom->IsNamed("acme-eu"));
  EXPECT_TRUE(custom->IsNamed("loom-auto"));  // built-ins stay
}

TEST(PolicyTest, PersonalDataIsSeenAndPlainPromptsAreNot) {
  for (const char* text : {"Write to jane.doe@example.org about the invoice",
                           "Call me on +44 20 7946 0958 tomorrow",
                           "My IBAN is DE89 3704 0044 0532 0130 00",
                           "here is my password: hunter2", "-----BEGIN OPENSSH PRIVATE KEY-----",
                           "Mein Passwort ist geheim"}) {
    EXPECT_TRUE(CarriesPersonalData(text)) << text;
  }
  for (const char* text : {"Write a haiku about autumn", "What is 12 * 34?",
                           "Explain @media queries in CSS", "Compare 1999 and 2024 GDP figures"}) {
    EXPECT_FALSE(CarriesPersonalData(text)) << text;
  }
}

TEST(PolicyTest, CarbonEstimateScalesWithTokensSizeAndIntensity) {
  EXPECT_DOUBLE_EQ(EstimatedCarbonGrams(0, 8, 400), 0);
  EXPECT_DOUBLE_EQ(EstimatedCarbonGrams(1000, 8, 0), 0);  // unknown intensity
  const double base = EstimatedCarbonGrams(1000, 8, 400);
  EXPECT_NEAR(base, 1.0 * kWhPer1kTokensPerBillionParams * 8 / 1000 * 400, 1e-12);
  EXPECT_NEAR(EstimatedCarbonGrams(2000, 8, 400), 2 * base, 1e-12);
  EXPECT_NEAR(EstimatedCarbonGrams(1000, 8, 40), base / 10, 1e-12);
}

}  // namespace
}  // namespace loom
