#include "coordinator/pipeline/response_synthesizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

std::vector<SubTaskOutcome> Parts() {
  std::vector<SubTaskOutcome> parts(2);
  parts[0].task.set_id("A");
  parts[0].task.set_prompt("Translate to Rust");
  parts[0].task.set_category(v1::TASK_CATEGORY_CODE);
  parts[0].result.output = " fn main() {}";
  parts[0].result.tokens = 5;
  parts[1].task.set_id("B");
  parts[1].task.set_prompt("Explain the differences");
  parts[1].task.set_category(v1::TASK_CATEGORY_REASONING);
  parts[1].result.output = " Ownership.";
  parts[1].result.tokens = 2;
  return parts;
}

class ResponseSynthesizerTest : public MeshFixture {};

TEST_F(ResponseSynthesizerTest, AModelWeavesThePartsAndStreamsTheAnswer) {
  AddDevice("l", "llama-3.1-8b", "llama");
  AddDevice("q", "qwen2.5-coder-7b", "qwen-coder");
  devices_.Set("l:1", {.chunks = {" Here", " is", " everything."}});
  auto s = ResponseSynthesizer(&attempts_).Synthesize(Scope(absl::Seconds(10)), "the request",
                                                      "Combine them.", Parts(), {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->output, " Here is everything.");
  ASSERT_TRUE(s->call.has_value());
  EXPECT_EQ(s->call->chosen.device_id, "l") << "general/reasoning affinity picks llama";
  EXPECT_TRUE(s->note.empty());
  const std::string prompt = devices_.InputOf("synthesis");
  EXPECT_THAT(prompt, HasSubstr("Combine them."));
  EXPECT_THAT(prompt, HasSubstr("the request"));
  EXPECT_THAT(prompt, HasSubstr("fn main() {}"));
  EXPECT_THAT(prompt, HasSubstr("Ownership."));
  int answer_deltas = 0;
  for (const auto& e : events_) answer_deltas += e.has_output() && e.output().answer();
  EXPECT_EQ(answer_deltas, 3);
}

TEST_F(ResponseSynthesizerTest, NoDeviceAbleToSynthesizeAssemblesThePartsAndSaysSo) {
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("l:1", {.status = absl::UnavailableError("gone")});
  auto s = ResponseSynthesizer(&attempts_).Synthesize(Scope(absl::Seconds(10)), "the request",
                                                      "Combine.", Parts(), {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->call.has_value());
  EXPECT_THAT(s->note, HasSubstr("without a synthesis model"));
  EXPECT_EQ(s->output,
            "## Part 1 (code: Translate to Rust)\nfn main() {}\n\n"
            "## Part 2 (reasoning: Explain the differences)\nOwnership.");
}

TEST_F(ResponseSynthesizerTest, CancellationIsNotHiddenByTheFallback) {
  AddDevice("l", "llama-3.1-8b", "llama");
  devices_.Set("l:1", {.chunks = {}, .wait_for_cancel = true});
  cancel_.Cancel();
  auto s = ResponseSynthesizer(&attempts_).Synthesize(Scope(absl::Seconds(10)), "r", "c",
                                                      Parts(), {});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace loom
