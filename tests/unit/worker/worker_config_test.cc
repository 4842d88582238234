#include "worker/worker_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

v1::WorkerConfig Valid() {
  v1::WorkerConfig c;
  c.set_device_id("dev-a");
  c.set_provider_id("alice");
  auto* m = c.add_models();
  m->mutable_info()->set_name("qwen2.5-coder-7b");
  m->mutable_sim()->set_output_tokens(16);
  return c;
}

TEST(WorkerConfigTest, FillsDefaults) {
  auto c = ValidateWorkerConfig(Valid(), "w.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_concurrency(), 4);
  EXPECT_EQ(c->models(0).info().family(), "qwen-coder");
  EXPECT_EQ(c->models(0).info().context_length(), 8192);
}

TEST(WorkerConfigTest, ErrorsNameTheOriginAndTheField) {
  auto c = Valid();
  c.set_device_id("");
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(), HasSubstr("w.json: device_id"));
  c = Valid();
  c.mutable_models(0)->mutable_info()->set_name("unknown-thing");
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(),
              HasSubstr("w.json: models[0].info.family"));
  c = Valid();
  *c.add_models() = c.models(0);
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(), HasSubstr("listed twice"));
  c = Valid();
  c.mutable_models(0)->clear_sim();
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(), HasSubstr("no backend"));
  c = Valid();
  c.mutable_models(0)->mutable_sim()->set_output_tokens(-1);
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(),
              HasSubstr("models[0].sim.output_tokens"));
  c = Valid();
  c.set_max_concurrency(-2);
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(), HasSubstr("max_concurrency"));
  c = Valid();
  (*c.mutable_models(0)->mutable_info()->mutable_affinity_overrides())["code"] = 1.5;
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(),
              HasSubstr("affinity_overrides.code"));
  c = Valid();
  c.clear_models();
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(), HasSubstr("models"));
}

TEST(WorkerConfigTest, GuessesFamilies) {
  EXPECT_EQ(GuessFamily("Qwen2.5-Coder-7B-Instruct"), "qwen-coder");
  EXPECT_EQ(GuessFamily("llama-3.1-8b"), "llama");
  EXPECT_EQ(GuessFamily("mistral-7b-instruct"), "mistral");
  EXPECT_EQ(GuessFamily("gpt-2"), "");
}

TEST(WorkerConfigTest, BuildsOneProviderPerModel) {
  auto c = ValidateWorkerConfig(Valid(), "w.json");
  ASSERT_TRUE(c.ok());
  auto served = BuildServedModels(*c);
  ASSERT_TRUE(served.ok());
  ASSERT_EQ(served->size(), 1u);
  EXPECT_TRUE((*served)[0].provider->simulated());
  EXPECT_EQ((*served)[0].info.name(), "qwen2.5-coder-7b");
}

TEST(WorkerConfigTest, OpenAIBackendIsValidatedAndBuilt) {
  auto c = Valid();
  c.mutable_models(0)->mutable_openai()->set_base_url("localhost:11434");
  EXPECT_THAT(ValidateWorkerConfig(c, "w.json").status().message(),
              HasSubstr("models[0].openai.base_url"));
  c.mutable_models(0)->mutable_openai()->set_base_url("http://127.0.0.1:11434/v1/");
  auto valid = ValidateWorkerConfig(c, "w.json");
  ASSERT_TRUE(valid.ok()) << valid.status();
  EXPECT_EQ(valid->models(0).openai().model(), "qwen2.5-coder-7b") << "defaults to the info name";
  auto served = BuildServedModels(*valid);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_FALSE((*served)[0].provider->simulated());
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The issue: one model --discover could not classify failed the whole device.
TEST(WorkerConfigTest, DiscoverServesEmbeddingModelsAsSuchAndSkipsWhatItCannotTell) {
  DiscoveredModels d = SelectDiscoveredModels(
      {"llama3.1:8b", "nomic-embed-text:latest", "qwen2.5-coder:7b", "mxbai-embed-large",
       "starling-lm:7b", "all-minilm"});
  EXPECT_EQ(d.served, (std::vector<std::string>{"llama3.1:8b", "qwen2.5-coder:7b"}));
  EXPECT_EQ(d.embeddings, (std::vector<std::string>{"nomic-embed-text:latest",
                                                    "mxbai-embed-large", "all-minilm"}));
  ASSERT_EQ(d.skipped.size(), 1u);
  EXPECT_EQ(d.skipped[0].first, "starling-lm:7b");
  EXPECT_THAT(d.skipped[0].second, ::testing::HasSubstr("--model=starling-lm:7b --family="));
}

TEST(WorkerConfigTest, AnEmbeddingModelHasNoOtherCapabilityAndNeedsNoFamily) {
  v1::WorkerConfig config;
  config.set_device_id("d");
  config.set_provider_id("p");
  auto* m = config.add_models();
  m->mutable_info()->set_name("nomic-embed-text");
  m->mutable_info()->add_capabilities("embeddings");
  m->mutable_sim();
  auto ok = ValidateWorkerConfig(config, "test");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->models(0).info().family(), "embedding");
  EXPECT_EQ(ok->models(0).info().capabilities_size(), 1) << "no chat capabilities added";
  m->mutable_info()->add_capabilities("tools");
  auto mixed = ValidateWorkerConfig(config, "test");
  EXPECT_FALSE(mixed.ok());
  EXPECT_THAT(mixed.status().message(), ::testing::HasSubstr("no other capability"));
}

}  // namespace
}  // namespace loom
