#include "coordinator/mesh/model_selector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

v1::DeviceInfo Device(const std::string& id, const std::string& model, const std::string& family,
                      int active, int max, double params = 7) {
  v1::DeviceInfo d;
  d.set_device_id(id);
  d.set_provider_id("p-" + id);
  d.set_address(id + ":1");
  d.set_state(v1::DEVICE_STATE_HEALTHY);
  auto* m = d.add_models();
  m->set_name(model);
  m->set_family(family);
  m->set_parameters_b(params);
  d.mutable_load()->set_active(active);
  d.mutable_load()->set_max_concurrency(max);
  return d;
}

std::vector<v1::DeviceInfo> ThreeFamilies() {
  return {Device("q", "qwen2.5-coder-7b", "qwen-coder", 0, 4),
          Device("l", "llama-3.1-8b", "llama", 0, 4),
          Device("m", "mistral-7b", "mistral", 0, 4)};
}

TEST(AffinityTableTest, DefaultsHoldTheDocumentedScores) {
  AffinityTable t = AffinityTable::Defaults();
  v1::ModelInfo m;
  m.set_family("qwen-coder");
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CODE), 0.95);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_REASONING), 0.70);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CREATIVE), 0.50);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_FACTUAL), 0.60);
  m.set_family("llama");
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CODE), 0.70);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_REASONING), 0.85);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CREATIVE), 0.80);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_FACTUAL), 0.80);
  m.set_family("mistral");
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CODE), 0.80);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_REASONING), 0.80);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CREATIVE), 0.70);
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_FACTUAL), 0.75);
  m.set_family("unheard-of");
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CODE), AffinityTable::kUnknownFamily);
}

TEST(AffinityTableTest, ModelOverridesAndConfigApply) {
  AffinityTable t = AffinityTable::Defaults();
  v1::ModelInfo m;
  m.set_family("llama");
  (*m.mutable_affinity_overrides())["code"] = 0.99;
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_CODE), 0.99);
  v1::AffinityConfig config;
  auto* f = config.add_families();
  f->set_family("llama");
  (*f->mutable_scores())["reasoning"] = 0.1;
  ASSERT_TRUE(t.Apply(config).ok());
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_REASONING), 0.1);
  (*f->mutable_scores())["reasonin"] = 0.5;
  EXPECT_THAT(t.Apply(config).message(), HasSubstr("unknown category"));
  f->mutable_scores()->erase("reasonin");
  (*f->mutable_scores())["code"] = 2;
  EXPECT_THAT(t.Apply(config).message(), HasSubstr("[0, 1]"));
  EXPECT_DOUBLE_EQ(t.Score(m, v1::TASK_CATEGORY_REASONING), 0.1) << "failed Apply changed nothing";
}

TEST(ModelSelectorTest, WorkedExampleGoesToTheSuitedFamilies) {
  ModelSelector selector;
  auto code = selector.SelectForCategories(ThreeFamilies(), {v1::TASK_CATEGORY_CODE}, {});
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(code->device_id, "q");
  EXPECT_THAT(code->reason, HasSubstr("chose q/qwen2.5-coder-7b 0.95"));
  EXPECT_THAT(code->reason, HasSubstr("then m/mistral-7b 0.80"));
  auto reasoning = selector.SelectForCategories(ThreeFamilies(), {v1::TASK_CATEGORY_REASONING}, {});
  EXPECT_EQ(reasoning->device_id, "l");
}

TEST(ModelSelectorTest, IdleLessSuitedModelBeatsTheBestModelOnABusyDevice) {
  std::vector<v1::DeviceInfo> devices = {Device("q", "qwen2.5-coder-7b", "qwen-coder", 2, 4),
                                         Device("l", "llama-3.1-8b", "llama", 0, 4)};
  // qwen: 0.95 - 0.6 * 0.5 = 0.65 < llama: 0.70 - 0 = 0.70
  auto s = ModelSelector().SelectForCategories(devices, {v1::TASK_CATEGORY_CODE}, {});
  EXPECT_EQ(s->device_id, "l");
  devices[0].mutable_load()->set_active(1);  // 0.95 - 0.15 = 0.80 > 0.70
  EXPECT_EQ(ModelSelector().SelectForCategories(devices, {v1::TASK_CATEGORY_CODE}, {})->device_id, "q");
}

TEST(ModelSelectorTest, UnhealthyAndExcludedDevicesAreNeverChosen) {
  auto devices = ThreeFamilies();
  devices[0].set_state(v1::DEVICE_STATE_SUSPECT);
  ModelSelector selector;
  EXPECT_EQ(selector.SelectForCategories(devices, {v1::TASK_CATEGORY_CODE}, {})->device_id, "m");
  EXPECT_EQ(selector.SelectForCategories(devices, {v1::TASK_CATEGORY_CODE}, {"m"})->device_id, "l");
  EXPECT_EQ(selector.SelectForCategories(devices, {v1::TASK_CATEGORY_CODE}, {"m", "l"}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ModelSelectorTest, TiesBreakDeterministically) {
  std::vector<v1::DeviceInfo> devices = {Device("b", "llama-a", "llama", 0, 4, 8),
                                         Device("a", "llama-b", "llama", 0, 4, 8),
                                         Device("c", "llama-c", "llama", 0, 4, 70)};
  ModelSelector selector;
  EXPECT_EQ(selector.SelectForCategories(devices, {v1::TASK_CATEGORY_GENERAL}, {})->device_id, "c");
  devices.pop_back();
  EXPECT_EQ(selector.SelectForCategories(devices, {v1::TASK_CATEGORY_GENERAL}, {})->device_id, "a");
}

TEST(ModelSelectorTest, SeveralCategoriesUseTheBestAffinity) {
  auto s = ModelSelector().SelectForCategories(
      ThreeFamilies(), {v1::TASK_CATEGORY_GENERAL, v1::TASK_CATEGORY_REASONING}, {});
  EXPECT_EQ(s->device_id, "l");
}

TEST(ModelSelectorTest, RankDistinctModelsForCompete) {
  auto devices = ThreeFamilies();
  devices.push_back(Device("l2", "llama-3.1-8b", "llama", 0, 4));  // same model twice
  auto picks = ModelSelector().RankDistinctModels(devices, v1::TASK_CATEGORY_CREATIVE, 3);
  ASSERT_EQ(picks.size(), 3u);
  std::set<std::string> models;
  for (const auto& p : picks) models.insert(p.model.name());
  EXPECT_EQ(models.size(), 3u);
  EXPECT_EQ(picks[0].model.name(), "llama-3.1-8b");
  EXPECT_EQ(ModelSelector().RankDistinctModels(devices, v1::TASK_CATEGORY_CREATIVE, 9).size(), 3u);
}

TEST(ModelSelectorTest, PassthroughPinsModelOrFamilyToTheLeastLoadedDevice) {
  std::vector<v1::DeviceInfo> devices = {Device("a", "llama-8b", "llama", 3, 4),
                                         Device("b", "llama-8b", "llama", 1, 4),
                                         Device("c", "qwen-7b", "qwen-coder", 0, 4)};
  ModelSelector selector;
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "llama-8b"}, {})->device_id, "b");
  EXPECT_EQ(selector.SelectPassthrough(devices, {.family = "qwen-coder"}, {})->device_id, "c");
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "gpt-9"}, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(selector.SelectPassthrough({}, {}, {}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "llama-8b"}, {"a", "b"}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ModelSelectorTest, CoordinatorInflightCountsAsLoad) {
  std::vector<v1::DeviceInfo> devices = {Device("a", "m", "llama", 0, 4), Device("b", "m", "llama", 0, 4)};
  devices[0].set_coordinator_inflight(2);
  EXPECT_EQ(ModelSelector().SelectPassthrough(devices, {.model = "m"}, {})->device_id, "b");
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(ModelSelectorCapabilityTest, OnlyModelsAdvertisingWhatTheRequestNeedsAreChosen) {
  ModelSelector selector;
  std::vector<v1::DeviceInfo> devices = {Device("idle-plain", "llama-8b", "llama", 0, 4),
                                         Device("busy-tools", "qwen-7b", "qwen", 3, 4)};
  devices[1].mutable_models(0)->add_capabilities("tools");
  // Without needs the idle device wins; needing tools, only the capable (busy) one can.
  EXPECT_EQ(selector.SelectPassthrough(devices, {}, {})->device_id, "idle-plain");
  EXPECT_EQ(selector.SelectPassthrough(devices, {.capabilities = {"tools"}}, {})->device_id, "busy-tools");
  auto none = selector.SelectPassthrough(devices, {.capabilities = {"tools", "json_schema"}}, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), ::testing::HasSubstr("with tools and json_schema"));
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "llama-8b", .capabilities = {"tools"}}, {})
                .status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace loom
