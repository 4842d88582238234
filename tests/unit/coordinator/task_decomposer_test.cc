#include "coordinator/pipeline/task_decomposer.h"

#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

constexpr char kWorkedExample[] =
    "Translate this Python code to Rust and explain the key differences between the two "
    "implementations.";

constexpr char kValidJson[] = R"(Here you go:
```json
{"sub_tasks": [
  {"id": "A", "prompt": "Translate the Python code to idiomatic Rust.", "category": "code",
   "order_index": 0, "depends_on": [], "estimated_tokens": 300},
  {"id": "B", "prompt": "Compare the two: memory management, type system, error handling.",
   "category": "reasoning", "order_index": 1, "depends_on": ["A"]}],
 "synthesis_prompt": "Show the Rust code, then the comparison."}
```)";

TEST(TaskDecomposerRulesTest, WorkedExampleGivesCodeThenDependentReasoning) {
  Decomposition d = TaskDecomposer::FromRules(RequestAnalyzer().AnalyzeText(kWorkedExample), 512);
  ASSERT_EQ(d.sub_tasks.size(), 2u);
  const v1::SubTask& a = d.sub_tasks[0];
  const v1::SubTask& b = d.sub_tasks[1];
  EXPECT_EQ(a.category(), v1::TASK_CATEGORY_CODE);
  EXPECT_EQ(a.order_index(), 0);
  EXPECT_TRUE(a.depends_on().empty());
  EXPECT_EQ(b.category(), v1::TASK_CATEGORY_REASONING);
  EXPECT_EQ(b.order_index(), 1);
  ASSERT_EQ(b.depends_on_size(), 1);
  EXPECT_EQ(b.depends_on(0), a.id());
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(d.method, "rules");
  EXPECT_FALSE(d.synthesis_prompt.empty());
}

TEST(TaskDecomposerRulesTest, IndependentAsksShareOrderZeroAndCarryTheMaterial) {
  Decomposition d = TaskDecomposer::FromRules(
      RequestAnalyzer().AnalyzeText("Write a poem about spring. Also, what is the capital of "
                                    "Kenya? Use this: spring rains"),
      256);
  ASSERT_EQ(d.sub_tasks.size(), 2u);
  for (const auto& t : d.sub_tasks) {
    EXPECT_EQ(t.order_index(), 0);
    EXPECT_TRUE(t.depends_on().empty());
    EXPECT_EQ(t.estimated_tokens(), 256);
  }
}

TEST(TaskDecomposerRulesTest, LabelsCutAtACharacterBoundary) {
  // The prompt from the hostile-input report: "é" straddles byte 57, where the label is cut.
  v1::SubTask task;
  task.set_category(v1::TASK_CATEGORY_CREATIVE);
  task.set_prompt("Write a short poem about the old cafexxxxxx in Z\xC3\xBCrich o\xC3\xB9 nous "
                  "\xC3\xA9tions d\xC3\xA9j\xC3\xA0 heureux.");
  for (size_t pad = 0; pad < 4; ++pad) {
    task.set_prompt(std::string(pad, 'x') + task.prompt());
    const std::string label = SubTaskLabel(task);
    EXPECT_TRUE(IsValidUtf8(label)) << pad << ": " << label;
    EXPECT_THAT(label, ::testing::EndsWith("..."));
  }
}

TEST(TaskDecomposerParseTest, AcceptsValidJsonAndMapsIdsToUuids) {
  auto d = TaskDecomposer::ParseModelOutput(kValidJson, {});
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->sub_tasks.size(), 2u);
  EXPECT_EQ(d->sub_tasks[0].id().size(), 36u);
  EXPECT_EQ(d->sub_tasks[1].depends_on(0), d->sub_tasks[0].id());
  EXPECT_EQ(d->sub_tasks[0].estimated_tokens(), 300);
  EXPECT_EQ(d->sub_tasks[1].estimated_tokens(), 512);
  EXPECT_EQ(d->synthesis_prompt, "Show the Rust code, then the comparison.");
}

struct BadCase {
  const char* name;
  std::string json;
  const char* why;
};

TEST(TaskDecomposerParseTest, RejectsEveryKindOfBadOutput) {
  const std::string task_a =
      R"({"id": "A", "prompt": "p", "category": "code", "order_index": 0})";
  auto wrap = [](const std::string& tasks) {
    return R"({"sub_tasks": [)" + tasks + R"(], "synthesis_prompt": "s"})";
  };
  std::string many;
  for (int i = 0; i < 9; ++i) {
    many += (i ? "," : "") + std::string(R"({"id": "T)") + std::to_string(i) +
            R"(", "prompt": "p", "category": "code", "order_index": 0})";
  }
  std::string deep;
  for (int i = 0; i < 5; ++i) {
    deep += (i ? "," : "") + std::string(R"({"id": "D)") + std::to_string(i) +
            R"(", "prompt": "p", "category": "code", "order_index": )" + std::to_string(i) +
            (i ? R"(, "depends_on": ["D)" + std::to_string(i - 1) + R"("]})" : "}");
  }
  const std::vector<BadCase> cases = {
      {"prose", "I think you should write the code first.", "no JSON object"},
      {"malformed", R"({"sub_tasks": [{"id": "A",}]})", "malformed"},
      {"no tasks", R"({"sub_tasks": [], "synthesis_prompt": "s"})", "no sub-tasks"},
      {"no synthesis", R"({"sub_tasks": [)" + task_a + "]}", "synthesis_prompt"},
      {"unknown category",
       wrap(R"({"id": "A", "prompt": "p", "category": "poetry", "order_index": 0})"),
       "not one of the eight"},
      {"duplicate id", wrap(task_a + "," + task_a), "duplicate id"},
      {"unknown dependency",
       wrap(R"({"id": "A", "prompt": "p", "category": "code", "order_index": 1, "depends_on": ["Z"]})"),
       "unknown id"},
      {"cycle",
       wrap(R"({"id": "A", "prompt": "p", "category": "code", "order_index": 0, "depends_on": ["B"]},
              {"id": "B", "prompt": "p", "category": "code", "order_index": 1, "depends_on": ["A"]})"),
       "not lower"},
      {"same order dependency",
       wrap(task_a + R"(, {"id": "B", "prompt": "p", "category": "code", "order_index": 0, "depends_on": ["A"]})"),
       "not lower"},
      {"too many", wrap(many), "more than 8"},
      {"too deep", wrap(deep), "deeper than 4"},
      {"empty prompt", wrap(R"({"id": "A", "prompt": "", "category": "code", "order_index": 0})"),
       "prompt"},
      {"oversized", wrap(task_a) + std::string(70 * 1024, ' '), "more than the limit"},
      {"negative order", wrap(R"({"id": "A", "prompt": "p", "category": "code", "order_index": -1})"),
       "order_index"},
  };
  for (const BadCase& c : cases) {
    auto d = TaskDecomposer::ParseModelOutput(c.json, {});
    ASSERT_FALSE(d.ok()) << c.name;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(d.status().message(), HasSubstr(c.why)) << c.name << ": " << d.status();
  }
}

class TaskDecomposerModelTest : public MeshFixture {
 protected:
  Decomposition Run(DecomposerOptions options) {
    TaskDecomposer decomposer(options, &attempts_);
    return decomposer.Decompose(Scope(), RequestAnalyzer().AnalyzeText(kWorkedExample),
                                kWorkedExample);
  }
};

TEST_F(TaskDecomposerModelTest, AsksTheSmallestRealModelAndUsesValidOutput) {
  AddDevice("big", "llama-70b", "llama", 0, 70, /*simulated=*/false);
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  devices_.Set("small:1", {.chunks = {kValidJson}});
  Decomposition d = Run({});
  EXPECT_EQ(d.method, "model:phi-3-mini");
  EXPECT_TRUE(d.note.empty());
  ASSERT_TRUE(d.model_call.has_value());
  EXPECT_EQ(d.model_call->chosen.device_id, "small");
  ASSERT_EQ(d.sub_tasks.size(), 2u);
  EXPECT_THAT(d.sub_tasks[1].prompt(), HasSubstr("memory management"));
  EXPECT_THAT(devices_.InputOf("decompose"), HasSubstr("Reply with JSON only"));
}

TEST_F(TaskDecomposerModelTest, InvalidOutputFallsBackToRulesWithTheReason) {
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  devices_.Set("small:1", {.chunks = {R"({"sub_tasks": [{"id": "A", "category": "poetry"}]})"}});
  Decomposition d = Run({});
  EXPECT_EQ(d.method, "rules");
  EXPECT_FALSE(d.model_call.has_value()) << "rejected output is not used, so not credited";
  EXPECT_THAT(d.note, HasSubstr("model phi-3-mini: decomposer output rejected"));
  EXPECT_EQ(d.sub_tasks.size(), 2u);
}

TEST_F(TaskDecomposerModelTest, LateModelFallsBackAtTheDeadline) {
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  devices_.Set("small:1", {.chunks = {}, .hang = true});
  DecomposerOptions options;
  options.timeout = absl::Milliseconds(50);
  Decomposition d = Run(options);
  EXPECT_EQ(d.method, "rules");
  EXPECT_THAT(d.note, HasSubstr("failed"));
  EXPECT_THAT(d.note, HasSubstr("DEADLINE_EXCEEDED"));
}

TEST_F(TaskDecomposerModelTest, AutoSkipsSimulatedDevicesAndRulesModeAsksNobody) {
  AddDevice("sim", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/true);
  Decomposition d = Run({});
  EXPECT_EQ(d.method, "rules");
  EXPECT_THAT(d.note, HasSubstr("no non-simulated model"));
  DecomposerOptions rules;
  rules.mode = DecomposerOptions::Mode::kRules;
  d = Run(rules);
  EXPECT_EQ(d.method, "rules");
  EXPECT_TRUE(d.note.empty());
  EXPECT_TRUE(devices_.calls().empty());
}

TEST_F(TaskDecomposerModelTest, ConfiguredModelIsUsedEvenWhenSimulatedInModelMode) {
  AddDevice("sim", "tiny-json", "phi", 0, 1, /*simulated=*/true);
  AddDevice("other", "phi-3-mini", "phi", 0, 0.5, /*simulated=*/true);
  devices_.Set("sim:1", {.chunks = {kValidJson}});
  DecomposerOptions options;
  options.mode = DecomposerOptions::Mode::kModel;
  options.model = "tiny-json";
  Decomposition d = Run(options);
  EXPECT_EQ(d.method, "model:tiny-json");
}

}  // namespace
}  // namespace loom
