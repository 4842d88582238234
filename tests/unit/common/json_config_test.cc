#include "common/json_config.h"

#include <cstdio>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "loom/v1/config.pb.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

// One file per test: ctest runs the tests of this binary as parallel processes.
std::string WriteTemp(const std::string& contents) {
  std::string path = ::testing::TempDir() + "/config_test_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".json";
  std::ofstream(path) << contents;
  return path;
}

TEST(JsonConfigTest, ParsesAWorkerConfig) {
  auto config = LoadConfigFile<v1::WorkerConfig>(WriteTemp(R"({
    "device_id": "d1", "provider_id": "p1",
    "models": [{"info": {"name": "llama-3.1-8b", "family": "llama"}, "sim": {"output_tokens": 8}}]
  })"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->device_id(), "d1");
  EXPECT_EQ(config->models(0).sim().output_tokens(), 8);
}

TEST(JsonConfigTest, UnknownFieldNamesTheFileAndTheField) {
  const std::string path = WriteTemp(R"({"device_id": "d1", "devise_name": "x"})");
  auto config = LoadConfigFile<v1::WorkerConfig>(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr(path));
  EXPECT_THAT(config.status().message(), HasSubstr("devise_name"));
}

TEST(JsonConfigTest, MalformedJsonIsInvalidArgument) {
  auto config = LoadConfigFile<v1::WorkerConfig>(WriteTemp("{\"device_id\": "));
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonConfigTest, MissingFileIsNotFound) {
  auto config = LoadConfigFile<v1::WorkerConfig>("/nonexistent/loom.json");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/loom.json"));
}

TEST(JsonConfigTest, OversizedConfigIsRefused) {
  v1::WorkerConfig config;
  std::string big(kMaxConfigBytes + 1, ' ');
  EXPECT_EQ(ParseJsonConfig(big, "big.json", &config).code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonConfigTest, ToJsonUsesTheProto3Mapping) {
  v1::WorkerConfig config;
  config.set_device_id("d1");
  EXPECT_THAT(ToJson(config, false), HasSubstr("\"deviceId\":\"d1\""));
}

}  // namespace
}  // namespace loom
