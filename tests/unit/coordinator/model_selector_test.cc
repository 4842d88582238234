#include "coordinator/model_selector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

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

TEST(ModelSelectorTest, PicksTheLeastLoadedDeviceServingTheModel) {
  std::vector<v1::DeviceInfo> devices = {Device("a", "llama-8b", "llama", 3, 4),
                                         Device("b", "llama-8b", "llama", 1, 4),
                                         Device("c", "qwen-7b", "qwen-coder", 0, 4)};
  ModelSelector selector;
  auto s = selector.SelectPassthrough(devices, {.model = "llama-8b"}, {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->device_id, "b");
  EXPECT_EQ(s->provider_id, "p-b");
  EXPECT_DOUBLE_EQ(s->load, 0.25);
  s = selector.SelectPassthrough(devices, {.family = "qwen-coder"}, {});
  EXPECT_EQ(s->device_id, "c");
  s = selector.SelectPassthrough(devices, {}, {});
  EXPECT_EQ(s->device_id, "c");
}

TEST(ModelSelectorTest, CoordinatorInflightCountsAsLoad) {
  std::vector<v1::DeviceInfo> devices = {Device("a", "m", "llama", 0, 4), Device("b", "m", "llama", 0, 4)};
  devices[0].set_coordinator_inflight(2);
  auto s = ModelSelector().SelectPassthrough(devices, {.model = "m"}, {});
  EXPECT_EQ(s->device_id, "b");
}

TEST(ModelSelectorTest, TiesBreakOnSizeThenDeviceId) {
  std::vector<v1::DeviceInfo> devices = {Device("b", "m1", "llama", 0, 4, 8),
                                         Device("a", "m2", "llama", 0, 4, 8),
                                         Device("c", "m3", "llama", 0, 4, 70)};
  ModelSelector selector;
  EXPECT_EQ(selector.SelectPassthrough(devices, {.family = "llama"}, {})->device_id, "c");
  devices.pop_back();
  EXPECT_EQ(selector.SelectPassthrough(devices, {.family = "llama"}, {})->device_id, "a");
}

TEST(ModelSelectorTest, NeverChoosesUnhealthyOrExcludedDevices) {
  std::vector<v1::DeviceInfo> devices = {Device("a", "m", "llama", 0, 4), Device("b", "m", "llama", 3, 4)};
  devices[0].set_state(v1::DEVICE_STATE_SUSPECT);
  ModelSelector selector;
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "m"}, {})->device_id, "b");
  auto none = selector.SelectPassthrough(devices, {.model = "m"}, {"b"});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(none.status().message(), ::testing::HasSubstr("no healthy device"));
}

TEST(ModelSelectorTest, UnknownModelIsNotFoundAndEmptyMeshUnavailable) {
  ModelSelector selector;
  std::vector<v1::DeviceInfo> devices = {Device("a", "m", "llama", 0, 4)};
  EXPECT_EQ(selector.SelectPassthrough(devices, {.model = "gpt-9"}, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(selector.SelectPassthrough({}, {}, {}).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace loom
