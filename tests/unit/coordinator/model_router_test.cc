#include "coordinator/pipeline/model_router.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/category_models.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

TEST(ModelRouterParseTest, ReadsTheFirstObjectStrictly) {
  auto v = ModelRouter::ParseReply(R"({"category": "translation", "multi_part": true})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->category, v1::TASK_CATEGORY_TRANSLATION);
  EXPECT_TRUE(v->multi_part);
  // Prose and a code fence around it, a category in capitals, no multi_part.
  v = ModelRouter::ParseReply("Sure!\n```json\n{\"category\": \"Code\"}\n```\nHope this helps.");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->category, v1::TASK_CATEGORY_CODE);
  EXPECT_FALSE(v->multi_part);

  struct Bad {
    std::string reply, why;
  };
  for (const Bad& b : std::vector<Bad>{
           {"I think it is code.", "no JSON object"},
           {"{category: code}", "malformed JSON"},
           {R"({"kind": "code"})", "no \"category\""},
           {R"({"category": "poetry"})", "not one of the eight"},
           {R"({"category": "code", "multi_part": "yes"})", "not a boolean"},
           {std::string(5000, 'x'), "more than"},
       }) {
    auto r = ModelRouter::ParseReply(b.reply);
    ASSERT_FALSE(r.ok()) << b.reply;
    EXPECT_THAT(r.status().message(), HasSubstr(b.why)) << r.status();
  }
}

class ModelRouterTest : public MeshFixture {
 protected:
  Analysis Unsure(const std::string& text) {
    AnalyzerOptions options;
    options.model = unsure_.get();
    return RequestAnalyzer(options).AnalyzeText(text);
  }
  static v1::CompleteRequest Request(const std::string& text) {
    v1::CompleteRequest r;
    *r.add_messages() = User(text);
    return r;
  }
  RouterResult Consult(const ModelRouter& router, const std::string& text) {
    return router.Consult(Scope(), text);
  }

  std::unique_ptr<CategoryModel> unsure_ = UnsureModel();  // every category 1/8
};

TEST_F(ModelRouterTest, ConsultsOnlyWhenOnAndTheClassifierIsUnsure) {
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  const std::string text = "Describe the mood of the painting.";
  const ModelRouter off({}, &attempts_);
  EXPECT_FALSE(off.ShouldConsult(Unsure(text), Request(text)));
  const ModelRouter on({.enabled = true}, &attempts_);
  EXPECT_TRUE(on.ShouldConsult(Unsure(text), Request(text)));
  v1::CompleteRequest pinned = Request(text);
  pinned.set_model("phi-3-mini");
  EXPECT_FALSE(on.ShouldConsult(Unsure(text), pinned));
  v1::CompleteRequest forced = Request(text);
  forced.set_mode(v1::PLAN_KIND_COMPETE);
  EXPECT_FALSE(on.ShouldConsult(Unsure(text), forced));
  // The built-in classifier is sure of this one.
  const std::string clear = "Translate 'good morning' into Japanese.";
  EXPECT_FALSE(on.ShouldConsult(RequestAnalyzer().AnalyzeText(clear), Request(clear)));
  // A follow-up was read with the turn it continues; the router would see it alone.
  Analysis follow_up = Unsure(text);
  follow_up.follow_up = true;
  EXPECT_FALSE(on.ShouldConsult(follow_up, Request(text)));
  Analysis under_task = Unsure(text);  // read with the task of its system message
  under_task.system_task = true;
  EXPECT_FALSE(on.ShouldConsult(under_task, Request(text)));
}

TEST_F(ModelRouterTest, AsksTheSmallestRealModelAndCachesItsVerdict) {
  AddDevice("big", "llama-70b", "llama", 0, 70, /*simulated=*/false);
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  devices_.Set("small:1", {.chunks = {R"({"category": "creative", "multi_part": false})"}});
  const ModelRouter router({.enabled = true}, &attempts_);
  RouterResult r = Consult(router, "Describe the mood of the painting.");
  ASSERT_TRUE(r.verdict.has_value()) << r.note;
  EXPECT_EQ(r.verdict->category, v1::TASK_CATEGORY_CREATIVE);
  EXPECT_THAT(r.note, HasSubstr("router model phi-3-mini: creative"));
  ASSERT_TRUE(r.call.has_value());
  EXPECT_EQ(r.call->chosen.device_id, "small");
  EXPECT_THAT(devices_.InputOf("route"), HasSubstr("Reply with JSON only"));
  EXPECT_THAT(devices_.InputOf("route"), HasSubstr("Describe the mood of the painting."));

  const size_t calls = devices_.calls().size();
  RouterResult again = Consult(router, "Describe the mood of the painting.");
  ASSERT_TRUE(again.verdict.has_value());
  EXPECT_EQ(again.verdict->category, v1::TASK_CATEGORY_CREATIVE);
  EXPECT_THAT(again.note, HasSubstr("cached"));
  EXPECT_FALSE(again.call.has_value()) << "a cached verdict costs nothing and is paid nothing";
  EXPECT_EQ(devices_.calls().size(), calls);
}

TEST_F(ModelRouterTest, MalformedWrongOrLateRepliesKeepTheClassifiersVerdict) {
  AddDevice("small", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/false);
  const ModelRouter router({.enabled = true, .timeout = absl::Milliseconds(50)}, &attempts_);

  devices_.Set("small:1", {.chunks = {"It is probably a creative request."}});
  RouterResult r = Consult(router, "one");
  EXPECT_FALSE(r.verdict.has_value());
  EXPECT_FALSE(r.call.has_value()) << "a rejected reply is not used, so not credited";
  EXPECT_THAT(r.note, HasSubstr("reply rejected (no JSON object"));

  devices_.Set("small:1", {.chunks = {R"({"category": "poetry"})"}});
  r = Consult(router, "two");
  EXPECT_FALSE(r.verdict.has_value());
  EXPECT_THAT(r.note, HasSubstr("not one of the eight"));

  devices_.Set("small:1", {.chunks = {}, .hang = true});
  r = Consult(router, "three");
  EXPECT_FALSE(r.verdict.has_value());
  EXPECT_THAT(r.note, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_THAT(r.note, HasSubstr("the classifier's verdict stands"));
}

TEST_F(ModelRouterTest, SimulatedDevicesAreNotAskedUnlessAModelIsNamed) {
  AddDevice("sim", "phi-3-mini", "phi", 0, 3.8, /*simulated=*/true);
  const ModelRouter router({.enabled = true}, &attempts_);
  RouterResult r = Consult(router, "Describe the mood of the painting.");
  EXPECT_FALSE(r.verdict.has_value());
  EXPECT_THAT(r.note, HasSubstr("no non-simulated model for the router"));
  EXPECT_TRUE(devices_.calls().empty());

  devices_.Set("sim:1", {.chunks = {R"({"category": "general"})"}});
  const ModelRouter named({.enabled = true, .model = "phi-3-mini"}, &attempts_);
  r = Consult(named, "Describe the mood of the painting.");
  ASSERT_TRUE(r.verdict.has_value()) << r.note;
  EXPECT_EQ(r.verdict->category, v1::TASK_CATEGORY_GENERAL);
}

TEST_F(ModelRouterTest, AVerdictSetsTheCategoryAndCompilesOnlyWhenAllowed) {
  Analysis a = Unsure("Describe the mood of the painting.");
  ASSERT_EQ(a.kind, v1::PLAN_KIND_PASSTHROUGH);
  Analysis b = a;
  ModelRouter::Apply({.category = v1::TASK_CATEGORY_SUMMARIZATION, .multi_part = true},
                     /*may_compile=*/false, &b);
  EXPECT_EQ(b.kind, v1::PLAN_KIND_PASSTHROUGH);
  EXPECT_EQ(b.asks[0].category, v1::TASK_CATEGORY_SUMMARIZATION);
  EXPECT_EQ(b.categories[0].category(), v1::TASK_CATEGORY_SUMMARIZATION);
  ModelRouter::Apply({.category = v1::TASK_CATEGORY_SUMMARIZATION, .multi_part = true},
                     /*may_compile=*/true, &a);
  EXPECT_EQ(a.kind, v1::PLAN_KIND_COMPILED);
}

}  // namespace
}  // namespace loom
